"""SearchSnippet/get works from a bounded beginning of each text body, and finds the first
match with one search per term (the review's 100,000 terms took 3.5 s; they are now refused as
unsupportedFilter, see test_filter_bounds), so a page of snippets of huge messages costs what
the page of their beginnings costs."""

from __future__ import annotations

import logging
import re
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from gateway.translators.email.filtering import MAX_SEARCH_TERMS
from gateway.translators.email.snippet import PREVIEW_OCTETS, SEARCHED_TEXT, excerpt
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import ok
from tests.upstream_log import upstream_commands

WINDOW = re.compile(r"BODY\.PEEK\[1\]<0\.(\d+)>")


async def test_a_huge_body_is_searched_from_its_beginning_only(
    dovecot: Dovecot, jmap: Jmap, caplog: pytest.LogCaptureFixture
) -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["Subject"] = "big"
    msg.set_content("needle at the start. " + "filler words here. " * 100_000)
    imap = dovecot.client(jmap.username)
    ok(imap.append("INBOX", "", None, msg.as_bytes(policy=SMTP)))
    imap.logout()
    (email,) = (await jmap.call("Email/query"))["ids"]
    # Reading the structure the first time fetches the message once (at most 16 MiB); from
    # then on the text is fetched apart.
    await jmap.call("Email/get", ids=[email], properties=["bodyStructure"])
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    caplog.clear()
    snippets = await jmap.call("SearchSnippet/get", filter={"body": "needle"}, emailIds=[email])
    (snippet,) = snippets["list"]
    assert snippet["preview"].startswith("<mark>needle</mark> at the start.")
    sent = upstream_commands(caplog)
    windows = [int(m.group(1)) for command in sent for m in WINDOW.finditer(command)]
    # A window of the text part, never the 1.9 MB part whole.
    assert windows and max(windows) <= 4 * SEARCHED_TEXT + 1024


def test_the_excerpt_is_found_with_every_term_of_a_filter() -> None:
    terms = [f"term{n}" for n in range(MAX_SEARCH_TERMS)]
    body = "lorem ipsum " * 50_000 + "the TERM63 is here " + "dolor " * 1_000
    preview = excerpt(body, terms)
    assert preview is not None and "<mark>TERM63</mark> is here" in preview
    assert len(preview.encode()) <= PREVIEW_OCTETS
    assert excerpt("nothing to see", terms) is None
    # The one letter whose lower case is two characters does not shift what is marked.
    assert excerpt("\u0130stanbul term1 x", terms) == "\u0130stanbul <mark>term1</mark> x"

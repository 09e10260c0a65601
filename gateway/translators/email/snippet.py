"""SearchSnippet/get (RFC 8621 5): the subject and a piece of the body with the filter's
words marked.

The words are those of the filter's text, subject and body conditions that are not under a
NOT (a word the client asked to be absent is not highlighted). Quoted parts are phrases;
other words match on their own, case-insensitively. The body is the email's textBody as
plain text (read through the body-value cache, so showing snippets for a page of results
fetches each text part at most once).
"""

from __future__ import annotations

import html
import re
from typing import Any

from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext
from gateway.jmap.errors import MethodError
from gateway.jmap.standard import ArgReader, as_filter, as_id, as_id_list, nullable
from gateway.mime.bodyparts import BodyPart, text_html_attachments
from gateway.mime.bodyvalues import html_to_text
from gateway.offload import sized
from gateway.translators.email.fetch import Loaded, load
from gateway.translators.email.filtering import Filter, Leaf, Node, TextSearch, parse_filter
from gateway.translators.email.filtering import terms as split_terms
from gateway.translators.email.properties import Source
from gateway.translators.email.values import ValueRequest, body_values
from gateway.translators.mailbox.view import mailbox_view

# RFC 8621 5: the preview "MUST NOT be bigger than 255 octets in size".
PREVIEW_OCTETS = 255
# Characters of context shown before the first match.
LEAD = 40
# Octets of each text part searched for the first match: up to 500 emails are asked for at
# once, so each gives its beginning only (a match past it shows no preview, which RFC 8621 5
# allows), never whole bodies of any size.
SEARCHED_TEXT = 64 * 1024
# Characters of a body searched for the excerpt: a match further on gives no preview. Each
# pass over the text is one call into C, which keeps the event loop waiting however long it
# runs (gateway.mime.limits.PIECE); real bodies are far shorter.
BODY_CHARS = 1024 * 1024
# Octets of plain input (gateway.offload.sized) a character of HTML costs to make plain and
# search (as bodyparts.parse_cost counts an octet of a message).
_COST_PER_CHARACTER = 16


async def search_snippet_get(
    ctx: CallContext[RequestEnv], arguments: dict[str, Any]
) -> dict[str, Any]:
    env = ctx.env
    reader = ArgReader(arguments, {"accountId", "filter", "emailIds"})
    account_id = reader.required("accountId", as_id)
    raw_filter = reader.optional("filter", nullable(as_filter), None)
    email_ids = reader.required("emailIds", as_id_list)
    reader.finish()
    max_objects = env.services.limits.max_objects_in_get
    if len(email_ids) > max_objects:
        raise MethodError("requestTooLarge", f"More than {max_objects} emailIds requested")
    subject_words, body_words = words(parse_filter(raw_filter))
    view = await mailbox_view(env)
    store = env.index.emails
    async with env.upstream() as upstream:
        records = await store.records(email_ids)
        visible = {i: r for i, r in records.items() if r.visible}
        sources = {Source.SUMMARY} | ({Source.STRUCTURE} if body_words else set())
        loaded = await load(store, upstream, view.records, visible, sources)
        texts: dict[str, dict[str, Any]] = {}
        if body_words:
            request = ValueRequest(True, False, False, SEARCHED_TEXT)
            structures = {i: s for i, s in loaded.structure.items() if i in visible}
            texts = await body_values(
                upstream, store, request, view.records, visible, structures, loaded.messages
            )
    found = [i for i in dict.fromkeys(email_ids) if i in visible and i not in loaded.vanished]
    # Bodies can be megabytes of HTML a stranger wrote: made plain off the loop then.
    size = sum(len(v["value"]) for i in found for v in texts.get(i, {}).values())
    snippets = await sized(
        _COST_PER_CHARACTER * size, _snippets, found, loaded, texts, subject_words, body_words
    )
    missing = [i for i in dict.fromkeys(email_ids) if i not in found]
    return {"accountId": account_id, "list": snippets, "notFound": missing or None}


def _snippets(
    found: list[str],
    loaded: Loaded,
    texts: dict[str, dict[str, Any]],
    subject_words: list[str],
    body_words: list[str],
) -> list[dict[str, Any]]:
    snippets = []
    for email_id in found:
        subject = (loaded.summary.get(email_id) or {}).get("subject") or ""
        root = loaded.structure.get(email_id)
        body = _plain_body(root, texts.get(email_id, {}))[:BODY_CHARS] if root is not None else ""
        snippets.append(
            {
                "emailId": email_id,
                "subject": highlight(subject, subject_words),
                "preview": excerpt(body, body_words),
            }
        )
    return snippets


def words(tree: Filter | None, negated: bool = False) -> tuple[list[str], list[str]]:
    """The words (and phrases) to mark in the subject and in the body."""
    if tree is None:
        return [], []
    if isinstance(tree, TextSearch):
        return words(tree.tree, negated)
    if isinstance(tree, Node):
        subject: list[str] = []
        body: list[str] = []
        for child in tree.children:
            more_subject, more_body = words(child, negated or tree.operator == "NOT")
            subject += more_subject
            body += more_body
        return subject, body
    if negated or not isinstance(tree, Leaf) or tree.name not in ("text", "subject", "body"):
        return [], []
    found = split_terms(str(tree.value))
    return (found if tree.name != "body" else []), (found if tree.name != "subject" else [])


def _pattern(terms: list[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    alternatives = "|".join(re.escape(t) for t in sorted(set(terms), key=len, reverse=True))
    return re.compile(alternatives, re.IGNORECASE)


def highlight(text: str, terms: list[str]) -> str | None:
    """``text`` HTML-escaped with every match of a term in <mark></mark>; None if none."""
    pattern = _pattern(terms)
    if pattern is None or pattern.search(text) is None:
        return None
    return _marked(text, pattern)


def _marked(text: str, pattern: re.Pattern[str]) -> str:
    out = []
    last = 0
    for match in pattern.finditer(text):
        out.append(html.escape(text[last : match.start()], quote=False))
        out.append(f"<mark>{html.escape(match.group(), quote=False)}</mark>")
        last = match.end()
    out.append(html.escape(text[last:], quote=False))
    return "".join(out)


def excerpt(body: str, terms: list[str]) -> str | None:
    """The part of the body around its first match, marked, at most PREVIEW_OCTETS octets.

    Only the first match is searched for in the whole body, and with ``str.find`` per term
    rather than the pattern, whose alternatives are tried at every position; the marking
    then works on a window of at most PREVIEW_OCTETS characters after the excerpt's start
    (each is at least one octet, so no more could fit).
    """
    pattern = _pattern(terms)
    text = " ".join(body.split())
    first = _first_match(text, pattern, terms) if pattern is not None else None
    if pattern is None or first is None:
        return None
    start = max(0, first.start() - LEAD)
    if start:
        # Begin at a word.
        space = text.find(" ", start, first.start())
        start = space + 1 if space >= 0 else start
    end = min(len(text), max(first.end(), start + PREVIEW_OCTETS))
    while True:
        rendered = _marked(text[start:end], pattern)
        if len(rendered.encode()) <= PREVIEW_OCTETS or end <= first.end():
            break
        end = max(first.end(), start + (end - start) * 3 // 4 if end - start > 8 else end - 1)
    while len(rendered.encode()) > PREVIEW_OCTETS and start < first.start():
        # The context before the match costs too much (entities): give it up first.
        start = min(first.start(), start + 8)
        rendered = _marked(text[start:end], pattern)
    while len(rendered.encode()) > PREVIEW_OCTETS:
        # Even the first match alone is too long: cut its text, never the markup.
        end -= 1
        rendered = _marked(text[start:end], pattern) if end > first.start() else ""
    return rendered


def _first_match(text: str, pattern: re.Pattern[str], terms: list[str]) -> re.Match[str] | None:
    """The pattern's first match in ``text``, found where the earliest term is.

    Terms are found case-insensitively as ``str.lower`` maps letters (one character to one,
    once U+0130, the one letter that lowers to two, is taken as "i"), then the pattern
    confirms the match there.
    """
    lowered = text.replace("\u0130", "i").lower()
    starts = [found for term in terms if (found := lowered.find(term.lower())) >= 0]
    return pattern.search(text, min(starts)) if starts else None


def _plain_body(root: BodyPart, values: dict[str, Any]) -> str:
    """The textBody's text, HTML parts turned into what a reader sees."""
    text, _, _ = text_html_attachments(root)
    pieces = []
    for part in text:
        value = values.get(str(part.part_id))
        if value is None:
            continue
        content = value["value"]
        pieces.append(html_to_text(content) if part.type == "text/html" else content)
    return "\n".join(pieces)

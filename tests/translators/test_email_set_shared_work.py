"""Work one Email/set shares between its objects (a patch written alike is parsed once, a STORE
is planned once per flag combination and change) still gives each object its own answer,
checked on the server with a plain IMAP client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import Mail
from tests.translators.test_email_set import email, ids_by_key, mailbox_ids, set_


def lowered(folder: dict[str, list[set[str]]]) -> dict[str, list[set[str]]]:
    return {key: [{f.lower() for f in copy} for copy in copies] for key, copies in folder.items()}


@pytest.fixture
def mail(dovecot: Dovecot, jmap: Jmap) -> Iterator[Mail]:
    client = Mail(dovecot, jmap.username)
    yield client
    client.close()


async def test_patches_written_alike_but_with_values_of_other_types_are_judged_apart(
    jmap: Jmap, mail: Mail
) -> None:
    for key in ("a", "b", "c", "d"):
        mail.append("INBOX", key)
    ids = await ids_by_key(jmap)

    # 1 == True and hash(1) == hash(True) in Python: the second must not pass for the first.
    result = await set_(
        jmap,
        update={
            ids["a"]: {"keywords/$seen": True},
            ids["b"]: {"keywords/$seen": 1},
            ids["c"]: {"keywords/$seen": True},
            ids["d"]: {"keywords/$seen": 1.0},
        },
    )

    assert result["updated"] == {ids["a"]: None, ids["c"]: None}
    assert sorted(result["notUpdated"]) == sorted([ids["b"], ids["d"]])
    for refused in (ids["b"], ids["d"]):
        error = result["notUpdated"][refused]
        assert error["type"] == "invalidProperties" and error["properties"] == ["keywords/$seen"]
    assert mail.folder("INBOX") == {
        "a": [{"\\Seen"}],
        "b": [set()],
        "c": [{"\\Seen"}],
        "d": [set()],
    }


async def test_one_whole_keywords_value_on_copies_of_many_flag_combinations(
    jmap: Jmap, mail: Mail
) -> None:
    mail.create("Archive")
    mail.append("INBOX", "a", flags="\\Seen")
    mail.append("INBOX", "b", flags="\\Seen \\Flagged $Forwarded")
    mail.append("INBOX", "c", flags="$FORWARDED")
    mail.append("INBOX", "d")
    mail.append("INBOX", "e", flags="\\Seen")
    mail.copy("INBOX", "e", "Archive")
    ids = await ids_by_key(jmap)
    boxes = await mailbox_ids(jmap)
    wanted = {"$flagged": True, "$forwarded": True}

    result = await set_(jmap, update={ids[k]: {"keywords": wanted} for k in "abcde"})

    assert result["updated"] == {ids[k]: None for k in "abcde"}
    # IMAP flags are case-insensitive (the server may keep the first spelling it saw).
    exact = {"\\flagged", "$forwarded"}
    assert lowered(mail.folder("INBOX")) == {k: [exact] for k in "abcde"}
    assert lowered(mail.folder("Archive")) == {"e": [exact]}
    for key in "abcde":
        got = await email(jmap, ids[key], "keywords", "mailboxIds")
        assert got["keywords"] == wanted
    assert (await email(jmap, ids["e"], "mailboxIds"))["mailboxIds"] == {
        boxes["INBOX"]: True,
        boxes["Archive"]: True,
    }

"""The typed commands against the real Dovecot: what they find and change is what a plain
stdlib IMAP session (the witness) sees, for messages whose fields the test chose."""

from __future__ import annotations

import re

from gateway.imap import mailboxes, messages
from gateway.imap.fetch import Attr, BodySection, uid_fetch
from gateway.imap.responses.codes import parse_appenduid
from gateway.imap.responses.fetch import fetches_by_uid
from gateway.imap.search import (
    ALL,
    And,
    Criterion,
    Header,
    Larger,
    Not,
    Or,
    Smaller,
    Text,
    TextKey,
    Uid,
)
from gateway.imap.sequence import from_uid
from tests.imap.upstream import logged_in
from tests.servers import Dovecot

FOLDER = "Typed (café)"
WITNESS_FOLDER = '"Typed (caf&AOk-)"'  # RFC 3501 5.1.3, written by hand for imaplib
MESSAGES = {
    "plans": ("bob@example.org", "plans", "<1@t>"),
    "next": ("carol@example.org", "next plans", "<2@t>"),
    "lunch": ("bob@example.org", "lunch at noon", "<3@t>"),
    "cafe": ("dave@example.org", "café au lait", "<4@t>"),
}


def message(sender: str, subject: str, message_id: str) -> bytes:
    encoded = "=?utf-8?q?caf=C3=A9_au_lait?=" if "é" in subject else subject
    return (
        f"From: {sender}\r\nSubject: {encoded}\r\nMessage-ID: {message_id}\r\n\r\n"
        f"about {subject}\r\n"
    ).encode()


async def test_typed_commands_on_a_real_server(dovecot: Dovecot) -> None:
    user = dovecot.fresh_user()
    conn = await logged_in(dovecot, user)
    await conn.execute(mailboxes.create(FOLDER, utf8=False))
    uids: dict[str, int] = {}
    for key, fields in MESSAGES.items():
        flags = ["\\Seen"] if key == "plans" else []
        result = await conn.execute(
            messages.append(FOLDER, message(*fields), flags=flags, received_at=None, utf8=False)
        )
        assert result.tagged.code is not None
        uids[key] = parse_appenduid(result.tagged.code).uids.min
    await conn.select(FOLDER)

    async def found(*criteria: Criterion) -> set[str]:
        hits = await conn.uid_search(*criteria)
        return {key for key, uid in uids.items() if uid in hits}

    bob = Text(TextKey.FROM, "bob")
    assert await found(ALL) == set(MESSAGES)
    assert await found(bob, Text(TextKey.SUBJECT, "plans")) == {"plans"}
    either = Or((bob, Text(TextKey.SUBJECT, "next"), Text(TextKey.BODY, "lait")))
    assert await found(either) == set(MESSAGES)
    assert await found(Or((Text(TextKey.SUBJECT, "next"), Text(TextKey.BODY, "lait")))) == {
        "next",
        "cafe",
    }
    neither = Not(And((bob, Text(TextKey.SUBJECT, "plans"))))
    assert await found(neither) == {"next", "lunch", "cafe"}
    assert await found(Not(Or(()))) == set(MESSAGES)
    assert await found(Header("Message-ID", "<3@t>")) == {"lunch"}
    assert await found(Uid(from_uid(uids["next"])), Not(bob)) == {"next", "cafe"}
    size = len(message(*MESSAGES["lunch"]))
    assert await found(Larger(size - 1), Smaller(size + 1)) == {"lunch"}
    cafe = await conn.uid_search(Text(TextKey.SUBJECT, "café"), charset="UTF-8")
    assert list(cafe) == [uids["cafe"]]

    fields = BodySection(fields=("SUBJECT", "MESSAGE-ID"), partial=(0, 20))
    result = await conn.execute(uid_fetch(uids.values(), [Attr.UID, Attr.FLAGS, fields]))
    fetched = fetches_by_uid(result.untagged)

    witness = dovecot.client(user)
    witness.select(WITNESS_FOLDER)
    asked = "(BODY.PEEK[HEADER.FIELDS (SUBJECT MESSAGE-ID)])"
    status, data = witness.uid("FETCH", str(uids["next"]), asked)
    assert status == "OK" and isinstance(data[0], tuple)
    whole = data[0][1]
    assert fetched[uids["next"]].section(fields) == whole[:20]
    assert "\\Seen" in (fetched[uids["plans"]].flags or [])
    assert "\\Seen" not in (fetched[uids["next"]].flags or [])

    await conn.execute(messages.uid_store(uids["lunch"], ["$Lunch"], mode="+"))
    await conn.execute_pipelined(*messages.remove(uids["plans"]))
    await conn.execute(messages.uid_copy(uids["cafe"], "INBOX", utf8=False))
    witness.select(WITNESS_FOLDER)  # a fresh view of the folder
    status, data = witness.uid("FETCH", "1:*", "(UID FLAGS)")
    assert status == "OK"
    lines = b" ".join(line for line in data if isinstance(line, bytes))
    left = {int(m[1]): m[2] for m in re.finditer(rb"UID (\d+) FLAGS \(([^)]*)\)", lines)}
    assert set(left) == {uids["next"], uids["lunch"], uids["cafe"]}
    assert b"$Lunch" in left[uids["lunch"]]
    witness.select("INBOX")
    assert witness.search(None, "HEADER", "Message-ID", "<4@t>")[1] == [b"1"]
    witness.logout()
    await conn.logout()

"""The mail corpus and its stdlib ground truth: well formed where meant, values checked by hand.

Email/get tests trust ``tests.mailtruth.expected``; these tests pin what it says for a few
messages, literally, and check the corpus itself (CRLF, keys, ids, dates, threads).
"""

from __future__ import annotations

import re
from datetime import datetime
from email import message_from_bytes, policy
from typing import Any

import pytest

from tests.mailcorpus import CONVERSATION, CORPUS, INTERNALDATES, THREADS
from tests.mailtruth import expected

KEYS = list(CORPUS)

# The properties whose stdlib answer tests must not compare, per message; every other
# message has none.
UNCERTAIN = {
    "utf8_latin1_bytes": {"textBodyText"},
    "unknown_charset": {"subject", "textBodyText"},
    "no_charset_8bit": {"textBodyText"},
    "broken_base64": {"textBodyText"},
    "header_8bit_latin1": {"subject", "from"},
    "bad_encoded_word": {"subject", "to", "cc"},
    "bad_addresses": {"from"},
    "bad_message_id": {"messageId"},
}

# Thread subject normalization of the corpus docstring: Re:/Fwd:/Fw: and [list] prefixes,
# then white space and case.
_PREFIXES = re.compile(r"^(?:\s*(?:(?:re|fwd?)\s*:|\[[^\]]*\]))*", re.IGNORECASE)


def normalized_subject(key: str) -> str:
    subject = expected(CORPUS[key])["subject"]
    assert isinstance(subject, str)
    return "".join(_PREFIXES.sub("", subject).split()).lower()


def links(key: str) -> set[str]:
    truth = expected(CORPUS[key])
    return set(truth["inReplyTo"] or []) | set(truth["references"] or [])


def message_id(key: str) -> str:
    ids = expected(CORPUS[key])["messageId"]
    assert isinstance(ids, list) and len(ids) == 1
    return str(ids[0])


def internaldate(key: str) -> datetime:
    return datetime.strptime(INTERNALDATES[key], "%d-%b-%Y %H:%M:%S %z")


@pytest.mark.parametrize("key", KEYS)
def test_message_parses_with_the_stdlib(key: str) -> None:
    message = message_from_bytes(CORPUS[key], policy=policy.default)
    for part in message.walk():
        for _, value in part.items():
            str(value)
    truth = expected(CORPUS[key])
    assert truth["size"] == len(CORPUS[key])
    assert truth["uncertain"] == UNCERTAIN.get(key, set())


@pytest.mark.parametrize("key", KEYS)
def test_message_is_crlf_with_its_key_first(key: str) -> None:
    raw = CORPUS[key]
    assert raw.count(b"\n") == raw.count(b"\r\n") == raw.count(b"\r")
    assert raw.startswith(b"X-Corpus-Key: %s\r\n" % key.encode())
    assert raw.lower().count(b"x-corpus-key:") == 1


def test_keys_and_message_ids_are_unique() -> None:
    assert len(set(KEYS)) == len(KEYS)
    ids = [message_id(key) for key in KEYS if key != "bad_message_id"]
    assert len(set(ids)) == len(ids) == len(KEYS) - 1
    assert expected(CORPUS["bad_message_id"])["messageId"] is None


def test_dates_are_distinct_and_internaldates_follow_them() -> None:
    assert set(INTERNALDATES) == set(KEYS)
    assert len(set(INTERNALDATES.values())) == len(KEYS)
    sent = {key: expected(CORPUS[key])["sentAt"] for key in KEYS}
    assert [key for key, value in sent.items() if value is None] == ["no_date", "bad_date"]
    dated = {key: datetime.fromisoformat(value) for key, value in sent.items() if value}
    assert len(set(dated.values())) == len(dated)
    for key, when in dated.items():
        assert when.utcoffset(), key
        assert when <= internaldate(key), key
    in_order = [internaldate(key) for key in CONVERSATION]
    assert in_order == sorted(in_order)


def test_threads_as_documented() -> None:
    assert THREADS[0] == CONVERSATION
    conversation = {message_id(key) for key in CONVERSATION}
    for earlier, key in enumerate(CONVERSATION[1:]):
        assert message_id(CONVERSATION[earlier]) in links(key)
        assert links(key) <= conversation
    assert {normalized_subject(key) for key in CONVERSATION} == {"plans"}
    assert [expected(CORPUS[key])["subject"] for key in CONVERSATION] == [
        "Plans",
        "Re: Plans",
        "RE: Plans",
        "Fwd: Plans",
        "Re: [list] Plans",
    ]
    # Same subject, no link; linked, other subject.
    assert normalized_subject("plans_unrelated") == "plans"
    assert not links("plans_unrelated")
    assert links("lunch") <= conversation and links("lunch")
    assert normalized_subject("lunch") != "plans"
    assert THREADS[1:] == [["plans_unrelated"], ["lunch"]]


def without_size(truth: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in truth.items() if name != "size"}


def test_expected_plain_7bit() -> None:
    assert without_size(expected(CORPUS["plain_7bit"])) == {
        "subject": "Plain 7bit message",
        "from": [{"name": "Alice Example", "email": "alice@example.org"}],
        "to": [{"name": "Bob Example", "email": "bob@example.net"}],
        "cc": [{"name": None, "email": "carol@example.com"}],
        "replyTo": [{"name": "Alice (work)", "email": "alice.work@example.org"}],
        "sender": [{"name": "Secretary", "email": "secretary@example.org"}],
        "messageId": ["plain-7bit.20240201@corpus.example"],
        "inReplyTo": None,
        "references": None,
        "sentAt": "2024-02-01T10:00:00+01:00",
        "textBodyText": "Hello Bob,\n\nThis is a plain 7bit ASCII message.\n\nAlice\n",
        "attachmentNames": [],
        "hasAttachment": False,
        "uncertain": set(),
    }


def test_expected_mixed_attachments() -> None:
    truth = expected(CORPUS["mixed_attachments"])
    assert truth["attachmentNames"] == [
        "report.pdf",
        "Übersicht März.txt",
        "Prüfbericht.pdf",
        "Отчёт.txt",
    ]
    assert truth["hasAttachment"] is True
    assert truth["textBodyText"] == "Please find the report attached.\n"
    assert truth["to"] == [
        {"name": "Bob Example", "email": "bob@example.net"},
        {"name": "Carol", "email": "carol@example.com"},
    ]
    assert truth["sentAt"] == "2024-02-05T09:00:00-08:00"
    assert truth["uncertain"] == set()


def test_expected_latin1_and_nfc() -> None:
    latin1 = expected(CORPUS["latin1"])
    assert latin1["subject"] == "Café crème et crêpes"
    assert latin1["from"] == [{"name": "René Dupont", "email": "rene@example.fr"}]
    assert latin1["to"] == [{"name": "Françoise", "email": "francoise@example.fr"}]
    assert latin1["textBodyText"] == "Le café était très chaud, à bientôt.\n"
    assert latin1["sentAt"] == "2024-02-08T10:20:00+01:00"
    # "e" + COMBINING GRAVE ACCENT in the encoded word comes out composed (RFC 8621 4.1.2.2).
    assert expected(CORPUS["qp_utf8"])["subject"] == "Café \u2615 et crème"


def test_expected_hostile_headers() -> None:
    addresses = expected(CORPUS["bad_addresses"])
    assert addresses["to"] == []
    assert addresses["cc"] == [
        {"name": None, "email": "a@example.org"},
        {"name": None, "email": "b@example.org"},
    ]
    assert addresses["replyTo"] == [
        {"name": None, "email": "one@example.org"},
        {"name": "Two", "email": "two@example.org"},
    ]
    assert expected(CORPUS["duplicate_subject"])["subject"] == "Second subject"
    no_space = expected(CORPUS["header_no_space"])
    assert no_space["subject"] == "No space after colon"
    assert no_space["from"] == [{"name": None, "email": "dave@example.org"}]
    assert no_space["sentAt"] == "2024-02-24T13:13:13-04:00"
    utf8 = expected(CORPUS["header_8bit_utf8"])
    assert utf8["subject"] == "Grüße aus Köln"
    assert utf8["from"] == [{"name": "Zoë Dupont", "email": "zoe@example.fr"}]
    assert utf8["attachmentNames"] == ["Café.txt"]
    references = expected(CORPUS["long_references"])["references"]
    assert references == [f"ref-{n:02d}.a1b2c3d4@lists.example.net" for n in range(40)]
    assert expected(CORPUS["related_inline"])["textBodyText"] is None
    assert expected(CORPUS["related_inline"])["hasAttachment"] is False
    nested = expected(CORPUS["nested_rfc822"])
    assert nested["textBodyText"] == "Forwarding the original below."
    assert nested["attachmentNames"] == ["original.eml"]

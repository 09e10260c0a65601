"""The gateway's own conversations, for upstreams without THREADID (RFC 8474).

A message joins the thread of a message it is linked to (its In-Reply-To, then its References
from the nearest ancestor back, then a message that already named it as a parent) when the two
also share a normalised subject; otherwise it starts a thread of its own. Requiring both, as
Cyrus's conversations do, keeps a reply that changes the topic, and the thousandth "Re: hello"
of a mailing list, out of threads they do not belong to.

Thread ids never change once given (RFC 8621 3: an Email's threadId is immutable), so threads
are never merged: a message linking two existing threads joins the first candidate.
Every Message-ID a message names is remembered, pointing at the thread the message joined, so
a parent arriving after its reply still finds the reply's thread.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.cache.emails import EmailStore
from gateway.cache.thread_table import subject_digest
from gateway.mime.headers import RawHeader, as_text, parse_header_block
from gateway.mime.limits import (
    FIELD_OCTETS,
    MESSAGE_ID_CHARS,
    THREAD_PARENTS,
    THREAD_SUBJECT_CHARS,
)

# Fields a message's thread is decided by; fetched with HEADER.FIELDS for every new message.
THREAD_FIELDS = ("MESSAGE-ID", "IN-REPLY-TO", "REFERENCES", "SUBJECT")

# Reply and forward prefixes in the languages mail clients most often write them, with the
# "Re[2]:" and "Re: [list]" forms; matched repeatedly at the start of the subject.
_PREFIX = re.compile(
    r"\s*(?:(?:re|fwd?|aw|sv|wg|vs|antw|rif|tr|odp)\s*(?:\[\d+\]|\(\d+\))?\s*[:\uff1a]|\[[^\]]*\])\s*",
    re.IGNORECASE,
)
# Forward trailers, removed repeatedly from the end (spacing around them goes too).
_TRAILERS = ("(fwd)", "(fw)")
_SPACE = re.compile(r"\s+")
# A msg-id as it appears in Message-ID, In-Reply-To and References: only for linking, so one
# lenient pattern for all three (the Email properties use the full RFC 5322 parser). One
# longer than MESSAGE_ID_CHARS does not match at its "<" (it holds no other "<", so no part
# of it matches either): it is left out as no real id.
_MESSAGE_ID = re.compile(rf"<\s*([^<>\s]{{1,{MESSAGE_ID_CHARS}}})\s*>")


def message_ids(value: str | None) -> list[str]:
    """The msg-ids of a field; one longer than MESSAGE_ID_CHARS is no real id and is left out."""
    return _MESSAGE_ID.findall(value) if value else []


def _first_message_id(value: str | None) -> str | None:
    """``message_ids(value)[0]``, or None if it has none."""
    found = _MESSAGE_ID.search(value) if value else None
    return None if found is None else found.group(1)


def ref_key(message_id: str) -> bytes:
    """The index key of a Message-ID: a short digest, as ids can be hundreds of octets."""
    return hashlib.blake2b(message_id.encode(), digest_size=12).digest()


def normalize_subject(subject: str | None) -> str:
    """The subject without reply/forward prefixes, list tags, case and spacing differences.

    One pass over the subject from each end, so a subject of thousands of prefixes costs no
    more than its length; the result keeps THREAD_SUBJECT_CHARS characters.
    """
    value = subject or ""
    start = 0
    while (match := _PREFIX.match(value, start)) is not None and match.end() > start:
        start = match.end()
    end = _without_trailers(value, start)
    kept = value[start:end]
    if "  " in kept or not kept.isprintable():
        # Only printable text with single ASCII spaces has no run of whitespace to fold
        # (every other whitespace character is a control or a separator).
        kept = _SPACE.sub(" ", kept)
    return kept.strip().casefold()[:THREAD_SUBJECT_CHARS]


def _without_trailers(value: str, start: int) -> int:
    """Where ``value[start:]`` ends once "(fwd)" trailers and the spaces around them are cut."""
    end = max(start, len(value.rstrip()))
    if not value.endswith(")", start, end):
        # No trailer (nearly every subject): only the spaces went.
        return end
    while True:
        while end > start and value[end - 1].isspace():
            end -= 1
        trailer = next(
            (t for t in _TRAILERS if value[max(start, end - len(t)) : end].lower() == t), None
        )
        if trailer is None:
            return end
        end -= len(trailer)


@dataclass(frozen=True, slots=True)
class Links:
    """What a message says about its place in a conversation."""

    message_id: str | None
    # nearest first: In-Reply-To, then References backwards; THREAD_PARENTS at most
    parents: tuple[str, ...]
    subject: str

    @classmethod
    def from_block(cls, block: bytes) -> Links:
        """``from_headers(parse_header_block(block))``, for a HEADER.FIELDS answer.

        A first sync reads tens of thousands: a block of plain ASCII fields with CRLF line
        ends (nearly all of them) is split here, each value exactly the octets
        parse_header_block would keep; any other goes through parse_header_block."""
        last = _plain_fields(block)
        if last is None:
            return cls.from_headers(parse_header_block(block))
        return cls._from_fields(last)

    @classmethod
    def from_headers(cls, headers: Sequence[RawHeader]) -> Links:
        # One pass: the last of each field counts.
        last: dict[str, str] = {}
        for header in headers:
            last[header.name.lower()] = header.value
        return cls._from_fields(last)

    @classmethod
    def _from_fields(cls, last: dict[str, str]) -> Links:
        """From the last value of each field, by lower-cased name."""
        reply = message_ids(last.get("in-reply-to"))[:THREAD_PARENTS]
        references = message_ids(last.get("references"))[-THREAD_PARENTS:]
        parents = tuple(dict.fromkeys([*reply, *reversed(references)]))[:THREAD_PARENTS]
        subject = last.get("subject")
        message_id = _first_message_id(last.get("message-id"))
        return cls(
            message_id,
            tuple(p for p in parents if p != message_id),
            normalize_subject(_subject_text(subject) if subject is not None else None),
        )


# A field as parse_header_block reads it (RFC 5322 3.6.8 name, optional WSP, colon), with its
# continuation lines, each line ended by CRLF; the value is the second group. A line that
# starts with a space or tab continues a field, any other starts one: a block made of such
# fields splits into them in one way only, which findall's left-to-right matches find.
_NAME = r"[\x21-\x39\x3b-\x7e]+"
_VALUE = r"[^\r\n]*(?:\r\n[ \t][^\r\n]*)*"
_PLAIN_FIELD = re.compile(rf"({_NAME})[ \t]*:({_VALUE})\r\n")
# A block of such fields only, optionally ended by a blank line.
_PLAIN_BLOCK = re.compile(rf"(?:{_NAME}[ \t]*:{_VALUE}\r\n)*(?:\r\n)?")


def _plain_fields(block: bytes) -> dict[str, str] | None:
    """The last value of each field by lower-cased name, for a block made only of such
    fields, optionally ended by a blank line, in ASCII without NUL and shorter than any
    bound parse_header_block applies; None for any other block."""
    if len(block) > FIELD_OCTETS or not block.isascii() or b"\x00" in block:
        return None
    text = block.decode("ascii")
    if _PLAIN_BLOCK.fullmatch(text) is None:
        return None
    return {name.lower(): value for name, value in _PLAIN_FIELD.findall(text)}


def _subject_text(raw: str) -> str:
    """The subject's Text form (gateway.mime.headers.as_text), without its work for the
    common case it leaves alone: one ASCII line without encoded-words (NFC and decoding then
    change nothing, and unfolding needs a line break)."""
    if raw.isascii() and "=?" not in raw and "\n" not in raw:
        return raw.lstrip(" ")
    return as_text(raw)


# RFC 4648 6 base32, lower-cased: two characters for each 10-bit value.
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
_BASE32_PAIRS = tuple(a + b for a in _BASE32 for b in _BASE32)
_SHIFTS = range(90, -1, -10)


def digest_id(prefix: str, material: bytes) -> str:
    """``prefix`` and the first 100 bits of the SHA-256 of ``material`` in base32 (RFC 8620
    1.2 id characters): the 20 characters base64.b32encode of its first 15 octets begins
    with, lower-cased, made without that function's per-call cost (a first sync makes one
    or two per message)."""
    bits = int.from_bytes(hashlib.sha256(material).digest()[:13], "big") >> 4
    return prefix + "".join([_BASE32_PAIRS[(bits >> shift) & 1023] for shift in _SHIFTS])


def thread_id_for(email_id: str) -> str:
    """A new thread's id, named after the message that started it."""
    return digest_id("t", b"thread\0" + email_id.encode())


class Threader:
    """Decides threads for a batch of new messages: one Redis read, writes left to the caller.

    Mappings made while the batch is decided are visible to later messages of the same batch.
    Message-IDs are handled as their :func:`ref_key`.
    """

    def __init__(self, store: EmailStore) -> None:
        self._store = store
        self._refs: dict[bytes, str] = {}
        # thread -> its subject's digest (gateway.cache.thread_table.subject_digest)
        self._subjects: dict[str, bytes] = {}
        self.new_refs: dict[bytes, str] = {}
        self.new_subjects: dict[str, str] = {}
        # Message-ID -> ref_key of the batch's ids, so assign() digests none twice.
        self._keys: dict[str, bytes] = {}

    async def prepare(self, batch: Sequence[Links]) -> None:
        """Read the thread of every Message-ID the batch names, and those threads' subjects."""
        keys = self._keys
        names: dict[bytes, None] = {}
        for links in batch:
            for name in (*links.parents, *([links.message_id] if links.message_id else [])):
                key = keys.get(name)
                if key is None:
                    key = keys[name] = ref_key(name)
                names[key] = None
        # One read: the keys' threads, and the subjects of the threads found (those of
        # threads met before in this batch are known already).
        refs, subjects = await self._store.thread_refs_and_subjects(
            n for n in names if n not in self._refs
        )
        self._refs.update(refs)
        # An empty subject is a subject ("Re:" answering a message without one).
        self._subjects.update({t: d for t, d in subjects.items() if t not in self._subjects})

    def assign(self, email_id: str, links: Links) -> str:
        """The thread of a new message (``prepare`` must have seen its links)."""
        keys = self._keys
        own = [keys.get(links.message_id) or ref_key(links.message_id)] if links.message_id else []
        parents = [keys.get(p) or ref_key(p) for p in links.parents]
        thread_id = None
        digest = subject_digest(links.subject)
        for name in (*parents, *own):
            candidate = self._refs.get(name)
            if candidate is not None and self._subjects.get(candidate) == digest:
                thread_id = candidate
                break
        if thread_id is None:
            thread_id = thread_id_for(email_id)
            if thread_id not in self._subjects:
                self._subjects[thread_id] = digest
                self.new_subjects[thread_id] = links.subject
        for name in (*own, *parents):
            if name not in self._refs:
                self._refs[name] = self.new_refs[name] = thread_id
        return thread_id

    def take_writes(self) -> tuple[dict[bytes, str], dict[str, str]]:
        """The mappings made since the last call: (Message-ID key -> thread, thread -> subject).

        The batch's lookups are forgotten too: the caller writes the mappings before the next
        batch is prepared, which then reads what it needs again, so a first sync of 100,000
        messages does not keep every Message-ID it saw in memory."""
        refs, subjects = self.new_refs, self.new_subjects
        self.new_refs, self.new_subjects = {}, {}
        self._refs, self._subjects, self._keys = {}, {}, {}
        return refs, subjects

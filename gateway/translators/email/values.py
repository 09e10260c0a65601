"""bodyValues (RFC 8621 4.2): the text parts asked for, fetched alone when the message is not.

A part is fetched with ``BODY.PEEK[<partId>]`` (partIds are IMAP section numbers), and with
``maxBodyValueBytes`` only its first octets: four times the limit covers the usual transfer
encodings and charsets (base64 is 4/3, quoted-printable at most 3). A part whose first
octets still hold too little text (UTF-32 in base64 needs over five) is fetched again with
a larger window, so the value is always cut by the limit, never by the fetch.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.cache.emails import EmailRecord
from gateway.cache.mailboxes import MailboxRecord
from gateway.imap.commands import Command
from gateway.imap.connection import ImapConnection
from gateway.imap.parse import fetches_by_uid
from gateway.imap.sequence import split_uid_set
from gateway.mime.bodyparts import BodyPart, text_html_attachments
from gateway.mime.bodyvalues import EmailBodyValue, body_value, prefix_body_value

# Slack for line breaks and a cut multi-octet sequence beyond the 4x bound.
_FETCH_SLACK = 1024


@dataclass(frozen=True)
class ValueRequest:
    fetch_text: bool
    fetch_html: bool
    fetch_all: bool
    max_bytes: int | None

    def parts(self, root: BodyPart) -> list[BodyPart]:
        """The text parts whose values are asked for, in bodyStructure order."""
        wanted: set[str | None] = set()
        if self.fetch_text or self.fetch_html:
            text, html, _ = text_html_attachments(root)
            wanted.update(p.part_id for p in (text if self.fetch_text else []))
            wanted.update(p.part_id for p in (html if self.fetch_html else []))
        return [
            part
            for part in root.walk()
            if part.part_id is not None
            and part.type.startswith("text/")
            and (self.fetch_all or part.part_id in wanted)
        ]

    def window(self, part: BodyPart, factor: int = 4) -> int | None:
        """How many encoded octets to fetch; None for the whole part."""
        if self.max_bytes is None:
            return None
        window = factor * self.max_bytes + _FETCH_SLACK
        return None if window >= part.body_end - part.body_start else window

    def section(self, part: BodyPart, factor: int = 4) -> str:
        window = self.window(part, factor)
        whole = f"BODY.PEEK[{part.part_id}]"
        return whole if window is None else f"{whole}<0.{window}>"

    def value(self, part: BodyPart, body: bytes, factor: int = 4) -> EmailBodyValue | None:
        """The part's value from what a fetch of :meth:`section` returned; None if too little."""
        window = self.window(part, factor)
        if window is None or self.max_bytes is None or len(body) < window:
            return body_value(part, body, max_bytes=self.max_bytes)
        return prefix_body_value(part, body, max_bytes=self.max_bytes)


async def body_values(
    conn: ImapConnection,
    request: ValueRequest,
    folders: dict[str, MailboxRecord],
    records: dict[str, EmailRecord],
    structures: dict[str, BodyPart],
    messages: dict[str, bytes],
) -> dict[str, dict[str, EmailBodyValue]]:
    """Per email id, its bodyValues by partId."""
    values: dict[str, dict[str, EmailBodyValue]] = {}
    groups: dict[tuple[str, tuple[str, ...]], dict[int, str]] = {}
    wanted: dict[str, list[BodyPart]] = {}
    for email_id, root in structures.items():
        parts = wanted[email_id] = request.parts(root)
        message = messages.get(email_id)
        if message is not None:
            values[email_id] = {
                str(p.part_id): body_value(
                    p, message[p.body_start : p.body_end], max_bytes=request.max_bytes
                )
                for p in parts
            }
            continue
        copies = records[email_id].visible_copies()
        if parts and copies:
            mailbox_id, uid = copies[0]
            sections = tuple(request.section(p) for p in parts)
            groups.setdefault((mailbox_id, sections), {})[uid] = email_id
        values[email_id] = {}
    short: list[tuple[str, int, str, BodyPart]] = []
    for (mailbox_id, sections), owners in groups.items():
        folder = folders.get(mailbox_id)
        if folder is None:
            continue
        state = await conn.select(folder.name, read_only=True)
        if state.uidvalidity != folder.uidvalidity:
            continue  # the uids name other messages now; see fetch.load
        for chunk in split_uid_set(owners):
            wanted_items = " ".join(["UID", *sections])
            result = await conn.execute(Command("UID", "FETCH", chunk, f"({wanted_items})"))
            for uid, item in fetches_by_uid(result.untagged).items():
                owner = owners.get(uid)
                if owner is None:
                    continue
                for part, section in zip(wanted[owner], sections, strict=True):
                    body = item.section(section)
                    if body is None:
                        continue
                    value = request.value(part, body)
                    if value is None:
                        short.append((mailbox_id, uid, owner, part))
                    else:
                        values[owner][str(part.part_id)] = value
    for mailbox_id, uid, owner, part in short:
        values[owner][str(part.part_id)] = await _wider(
            conn, request, folders[mailbox_id], uid, part
        )
    return values


async def _wider(
    conn: ImapConnection, request: ValueRequest, folder: MailboxRecord, uid: int, part: BodyPart
) -> EmailBodyValue:
    """Fetch more of a part until its value reaches the limit (or the part is whole)."""
    factor = 16
    while True:
        section = request.section(part, factor)
        await conn.select(folder.name, read_only=True)
        result = await conn.execute(Command("UID", "FETCH", str(uid), f"(UID {section})"))
        item = fetches_by_uid(result.untagged).get(uid)
        body = item.section(section) if item is not None else None
        value = request.value(part, body or b"", factor)
        if value is not None:
            return value
        factor *= 4

"""hasAttachment of many emails at once, for Email/query's hasAttachment condition.

From the cached body structure where there is one; otherwise from the upstream's
BODYSTRUCTURE (one UID FETCH per folder, a few hundred octets per message, no body), turned
into the part skeleton RFC 8621's textBody/htmlBody/attachments algorithm reads: type,
disposition and whether the part is named. The answer is cached per email.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import takewhile

from gateway.cache.emails import EmailRecord, EmailStore, decode_value
from gateway.cache.mailboxes import MailboxRecord
from gateway.imap.fetch import Attr
from gateway.imap.lazy import LazyConnection
from gateway.imap.responses.tokens import Value
from gateway.mime.bodyparts import BodyPart, from_plain, has_attachment, text_html_attachments
from gateway.mime.limits import MAX_DEPTH
from gateway.translators.email.fetch import fetch_items
from gateway.translators.email.properties import Source

KIND = "attachment"


async def has_attachments(
    upstream: LazyConnection,
    store: EmailStore,
    folders: dict[str, MailboxRecord],
    records: dict[str, EmailRecord],
) -> dict[str, bool]:
    cached = await store.cached_kinds([KIND, Source.STRUCTURE.value], records)
    answers = {i: v == b"1" for i, v in cached.get(KIND, {}).items()}
    for email_id, data in cached.get(Source.STRUCTURE.value, {}).items():
        if email_id not in answers:
            answers[email_id] = _from_root(from_plain(decode_value(data)))
    groups: dict[str, dict[int, str]] = {}
    for email_id, record in records.items():
        copies = record.visible_copies()
        if email_id not in answers and copies:
            mailbox_id, uid = copies[0]
            groups.setdefault(mailbox_id, {})[uid] = email_id
    fresh: dict[str, bool] = {}
    for mailbox_id, owners in groups.items():
        folder = folders.get(mailbox_id)
        if folder is None:
            continue
        conn = await upstream.connection()
        fetched = await fetch_items(conn, folder, owners, Attr.BODYSTRUCTURE)
        for uid, item in fetched.items():
            fresh[owners[uid]] = _from_root(skeleton(item.get(Attr.BODYSTRUCTURE)))
    await store.cache({KIND: {i: b"1" if v else b"0" for i, v in fresh.items()}})
    return {**answers, **fresh}


def _from_root(root: BodyPart) -> bool:
    return has_attachment(text_html_attachments(root)[2])


def skeleton(structure: Value, depth: int = 0) -> BodyPart:
    """A BodyPart with what the attachments algorithm reads, from a BODYSTRUCTURE value;
    multiparts past MAX_DEPTH are left without parts, as the gateway's own parse leaves them."""
    items: Sequence[Value] = structure if isinstance(structure, list) else []
    if items and isinstance(items[0], list):
        # body-type-mpart: the parts, then the subtype, then extension data (lists too).
        parts = list(takewhile(lambda p: isinstance(p, list), items))
        children = tuple(skeleton(p, depth + 1) for p in parts) if depth < MAX_DEPTH else ()
        subtype = _text(items[len(parts)]) if len(items) > len(parts) else "mixed"
        return _part(f"multipart/{subtype}", None, False, children)
    if len(items) < 7:
        return _part("application/octet-stream", None, False, ())
    media = f"{_text(items[0])}/{_text(items[1])}"
    # Extension data follows the basic fields: text parts have a line count, messages an
    # envelope, body and line count (RFC 3501 7.4.2 body-type-1part).
    basic = {"text": 8, "message": 10}.get(_text(items[0]), 7)
    if media != "message/rfc822" and media != "message/global" and _text(items[0]) == "message":
        basic = 7
    disposition = items[basic + 1] if len(items) > basic + 1 else None
    kind = _text(disposition[0]) if isinstance(disposition, list) and disposition else None
    named = _param(items[2], "name") or (
        isinstance(disposition, list)
        and len(disposition) > 1
        and _param(disposition[1], "filename")
    )
    return _part(media, kind, bool(named), ())


def _part(
    media: str, disposition: str | None, named: bool, children: tuple[BodyPart, ...]
) -> BodyPart:
    return BodyPart(
        part_id=None,
        type=media,
        headers=(),
        name="attachment" if named else None,
        charset=None,
        disposition=disposition,
        cid=None,
        language=None,
        location=None,
        transfer_encoding="7bit",
        size=0,
        header_start=0,
        body_start=0,
        body_end=0,
        sub_parts=children,
    )


def _param(params: Value, name: str) -> bool:
    """Whether a parameter list gives ``name`` (or its RFC 2231 forms ``name*``...) a value
    that is not blank, as the full parse of a part's name requires."""
    if not isinstance(params, list):
        return False
    pairs = zip(params[::2], params[1::2], strict=False)
    return any(_text(key).split("*", 1)[0] == name and _text(value).strip() for key, value in pairs)


def _text(value: Value) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").lower()
    return value.lower() if isinstance(value, str) else ""

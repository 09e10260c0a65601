"""New Emails from messages the gateway stores upstream: Email/set create and Email/import.

Both come down to a message, its mailboxes, keywords and receivedAt: the message is stored
with gateway.translators.email.append, then one catch-up reads back the ids the upstream's
copies were given (the Email id, its thread, its size), exactly as for mail delivered by any
other route.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from gateway.cache.locks import LockTimeout
from gateway.env import RequestEnv
from gateway.imap.connection import ImapConnection
from gateway.imap.errors import CommandFailed, ImapError
from gateway.jmap.dispatch import CallContext
from gateway.jmap.errors import SetError
from gateway.jmap.standard import InvalidValue, as_utc_date
from gateway.mime.bodyparts import parse_cost
from gateway.mime.compose import ComposeError, compose, referenced_blobs
from gateway.mime.headers import as_text, parse_header_block
from gateway.offload import sized
from gateway.translators.email.append import (
    Delivery,
    NoAppendUid,
    copy_to_others,
    deliver,
    find_appended,
)
from gateway.translators.email.blob_ids import message_blob_id
from gateway.translators.email.blob_read import BlobBudgetSpent, BlobTooLarge, read_blob
from gateway.translators.email.patch import MAX_KEYWORDS
from gateway.translators.email.properties import METADATA, PROPERTIES, utc_date
from gateway.translators.keywords import flags_from_keywords, is_valid_keyword
from gateway.translators.mailbox.view import MailboxView, mailbox_view
from gateway.translators.upstream_refusals import Work, refused

log = logging.getLogger(__name__)

# Properties that say where and how a message is stored, not what it says: the index
# metadata a client may give (mailboxIds, keywords, receivedAt).
PLACEMENT = frozenset(METADATA) - PROPERTIES.server_set
# The receivedAt an IMAP server stores as APPEND's date (RFC 3501 6.3.11), found by asking
# Dovecot 2.3 and Cyrus 3.6 with a plain client: both keep seconds since 1970 in 32 bits.
# Before 1970 Dovecot stores a wrapped date (1969 became 2038) and Cyrus refuses; Cyrus takes
# 1970-01-01T00:00:00Z for "now" and wraps after 2106-02-07T06:28:15Z. Dovecot also stores
# "now" for a date more than two hours ahead: the created Email reports what was stored.
EARLIEST_RECEIVED_AT = datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
LATEST_RECEIVED_AT = datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC)


@dataclass(frozen=True)
class Placement:
    mailboxes: tuple[str, ...]
    keywords: tuple[str, ...]
    received_at: datetime | None


Resolver = Callable[[str], str | None]


def placement(props: Mapping[str, Any], resolve: Resolver, max_mailboxes: int) -> Placement:
    """mailboxIds, keywords and receivedAt of a create or import; SetError if invalid."""
    boxes = props.get("mailboxIds")
    if not isinstance(boxes, dict) or not boxes:
        raise SetError.invalid_properties(["mailboxIds"], "at least one mailbox is required")
    mailboxes: list[str] = []
    for key, value in boxes.items():
        found = resolve(key) if value is True else None
        if found is None:
            raise SetError.invalid_properties([f"mailboxIds/{key}"], "no such mailbox")
        if found not in mailboxes:
            mailboxes.append(found)
    if len(mailboxes) > max_mailboxes:
        raise SetError("tooManyMailboxes", f"an Email may be in at most {max_mailboxes}")
    keywords = props.get("keywords")
    keywords = {} if keywords is None else keywords
    if not isinstance(keywords, dict):
        raise SetError.invalid_properties(["keywords"], "must be an object")
    for key, value in keywords.items():
        if value is not True or not is_valid_keyword(key):
            raise SetError.invalid_properties([f"keywords/{key}"], "not a valid keyword")
    if len(keywords) > MAX_KEYWORDS:
        raise SetError("tooManyKeywords", f"an Email may have at most {MAX_KEYWORDS} keywords")
    received_at = None
    if props.get("receivedAt") is not None:
        try:
            received_at = as_utc_date(props["receivedAt"])
        except InvalidValue as problem:
            raise SetError.invalid_properties(["receivedAt"], str(problem)) from None
        if not storable_received_at(received_at):
            raise SetError.invalid_properties(
                ["receivedAt"],
                f"IMAP servers store dates from {EARLIEST_RECEIVED_AT:%Y-%m-%dT%H:%M:%SZ} "
                f"to {LATEST_RECEIVED_AT:%Y-%m-%dT%H:%M:%SZ}",
            )
    lowered = dict.fromkeys(k.lower() for k in keywords)
    return Placement(tuple(mailboxes), tuple(flags_from_keywords(lowered)), received_at)


def storable_received_at(moment: datetime) -> bool:
    return EARLIEST_RECEIVED_AT <= moment <= LATEST_RECEIVED_AT


def message_id_of(message: bytes) -> str | None:
    """The (first) Message-ID field of a message, as written, to recognise it upstream later."""
    for field in parse_header_block(message):
        if field.name.lower() == "message-id":
            return as_text(field.value).strip() or None
    return None


def message_domain(env: RequestEnv) -> str:
    """The right-hand side of generated Message-IDs: the user's own domain when the login
    is an address, else the gateway's public host."""
    _, at, domain = env.principal.username.rpartition("@")
    if at and domain:
        return domain
    return urlsplit(env.services.settings.base_url).hostname or "localhost"


async def create_emails(
    ctx: CallContext[RequestEnv], create: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, dict[str, Any]], dict[str, SetError]]:
    """Email/set create: compose each message, then store them all."""
    env = ctx.env
    if not create:
        return {}, {}
    blobs, too_large = await _read_blobs(env, create)
    now = datetime.now(UTC)
    settings = env.services.settings
    messages: dict[str, tuple[Mapping[str, Any], bytes]] = {}
    failed: dict[str, SetError] = {}
    for creation_id, props in create.items():
        content = {k: v for k, v in props.items() if k not in PLACEMENT}
        large = [too_large[b] for b in referenced_blobs(content) if b in too_large]
        try:
            if large:
                raise SetError("tooLarge", large[0])
            message = compose(
                content,
                blobs,
                now=now,
                domain=message_domain(env),
                max_attachments_size=settings.max_size_attachments_per_email,
            )
        except ComposeError as error:
            failed[creation_id] = _compose_error(error)
            continue
        except SetError as error:
            failed[creation_id] = error
            continue
        messages[creation_id] = (props, message)
    created, not_created = await store_messages(ctx, messages)
    return created, {**failed, **not_created}


async def _read_blobs(
    env: RequestEnv, create: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, bytes], dict[str, str]]:
    """The octets of every blob the creates name (before any upstream connection is held:
    a message blob takes one of its own), and why the others could not be read."""
    limit = env.services.settings.max_size_attachments_per_email
    blobs: dict[str, bytes] = {}
    too_large: dict[str, str] = {}
    for props in create.values():
        for blob_id in referenced_blobs(props):
            if blob_id in blobs or blob_id in too_large:
                continue
            try:
                data = await read_blob(env, blob_id, limit)
            except BlobBudgetSpent:
                too_large[blob_id] = "the attachments of this request are more than it may read"
                continue
            except BlobTooLarge:
                too_large[blob_id] = "an attachment is larger than the server accepts"
                continue
            if data is not None:
                blobs[blob_id] = data
    return blobs, too_large


def _compose_error(error: ComposeError) -> SetError:
    if error.type == "blobNotFound":
        return SetError.blob_not_found(error.not_found, error.description)
    if error.type == "invalidProperties":
        return SetError.invalid_properties(error.properties, error.description)
    return SetError(error.type, error.description)


async def store_messages(
    ctx: CallContext[RequestEnv],
    messages: Mapping[str, tuple[Mapping[str, Any], bytes]],
    received_defaults: Mapping[str, datetime] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, SetError]]:
    """Store each message where its properties say; the created Emails' id, blobId,
    threadId and size, by creation id, and receivedAt unless it is exactly what the client
    sent (a default, or what the upstream stored instead). Creation ids are registered for
    ``#`` references. ``received_defaults``: receivedAt for creates that have none."""
    env = ctx.env
    created: dict[str, dict[str, Any]] = {}
    failed: dict[str, SetError] = {}
    if not messages:
        return created, failed
    stored: dict[str, tuple[str, int]] = {}
    view = await mailbox_view(env)
    store = env.index.emails
    limit = env.services.settings.max_mailboxes_per_email
    for creation_id, (props, message) in messages.items():
        try:
            where = placement(props, lambda key: selectable_mailbox(ctx, view, key), limit)
        except SetError as error:
            failed[creation_id] = error
            continue
        received_at = where.received_at or (received_defaults or {}).get(creation_id)
        message_id = await sized(parse_cost(message), message_id_of, message)
        delivery = Delivery(message, where.mailboxes, where.keywords, received_at, message_id)
        try:
            stored[creation_id] = await _store_one(env, view, delivery)
        except SetError as error:
            failed[creation_id] = error
    if stored and not await _read_back(env):
        # Stored, but the ids cannot be learnt now: the Emails appear at the next catch-up.
        unread = SetError("serverFail", "stored, but the mail server could not be asked its id")
        return created, {**failed, **dict.fromkeys(stored, unread)}
    for creation_id, (folder_id, uid) in stored.items():
        email_id = (await store.email_ids_of(folder_id, [uid])).get(uid)
        record = (await store.records([email_id])).get(email_id) if email_id else None
        if record is None:
            failed[creation_id] = SetError("serverFail", "stored, but not found upstream after")
            continue
        ctx.created_ids[creation_id] = record.id
        created[creation_id] = {
            "id": record.id,
            "blobId": message_blob_id(record.id),
            "threadId": record.thread_id,
            "size": record.size,
        }
        asked = messages[creation_id][0].get("receivedAt")
        stored_at = datetime.fromtimestamp(record.received_at, UTC)
        if asked is None or as_utc_date(asked) != stored_at:
            # RFC 8620 5.3: defaults set by the server are returned; so is a date the
            # upstream stored otherwise (Dovecot's "now" for one far ahead, whole seconds).
            created[creation_id]["receivedAt"] = utc_date(record.received_at)
    return created, failed


async def _read_back(env: RequestEnv) -> bool:
    """Catch up after storing, on a new connection if the first one breaks."""
    for _ in range(2):
        try:
            await env.catch_up(fresh=True)
            return True
        except (ImapError, LockTimeout) as exc:
            log.warning("reading back stored messages failed (%s)", exc)
    return False


def selectable_mailbox(ctx: CallContext[RequestEnv], view: MailboxView, key: str) -> str | None:
    """A mailbox id (or ``#creationId`` of one created earlier) that can hold mail."""
    mailbox_id = ctx.created_ids.get(key[1:]) if key.startswith("#") else key
    record = view.records.get(mailbox_id or "")
    if record is None or not record.selectable or record.uidvalidity is None:
        return None
    return record.id


async def _store_one(env: RequestEnv, view: MailboxView, delivery: Delivery) -> tuple[str, int]:
    """APPEND (and COPY) one message; after a lost answer, find what was stored (the message
    and any copies) before doing only what is missing."""
    lows = {f: view.records[f].uidnext or 1 for f in delivery.mailboxes}
    first = delivery.mailboxes[0]
    lost: Exception | None = None
    for attempt_number in range(2):
        try:
            async with env.upstream() as upstream:
                conn = await upstream.connection()
                if attempt_number:
                    uid = await find_appended(conn, view.records[first], delivery, lows[first])
                    if uid is not None:
                        existing = await _copies_made(conn, view, delivery, lows)
                        await copy_to_others(conn, view.records, delivery, uid, existing)
                        return first, uid
                return await deliver(conn, view.records, delivery)
        except CommandFailed as exc:
            raise refused(exc, Work.NEW_MESSAGE) from None
        except (ImapError, NoAppendUid) as exc:
            log.warning("storing a message: answer lost (%s); looking for it", exc)
            lost = exc
    raise SetError(
        "serverFail", "the mail server could not be reached to store the message", cause=lost
    )


async def _copies_made(
    conn: ImapConnection, view: MailboxView, delivery: Delivery, lows: dict[str, int]
) -> dict[str, int]:
    """Copies to the other mailboxes that a cut-off attempt already made."""
    found: dict[str, int] = {}
    for folder_id in delivery.mailboxes[1:]:
        uid = await find_appended(conn, view.records[folder_id], delivery, lows[folder_id])
        if uid is not None:
            found[folder_id] = uid
    return found

"""Where identities are kept: one private METADATA server entry each, with Redis as the cache.

``/private/vendor/jmap-gateway/identity/<id>`` holds one identity as JSON (its JMAP
properties but ``id`` and ``mayDelete``). One entry per identity, so two clients writing
different identities never overwrite each other, and GETMETADATA with DEPTH 1 reads them all
in one command. Ids are lower case: Dovecot gives entry names back lower-cased.

An upstream without METADATA (or METADATA-SERVER) leaves Redis as the only copy; identities
created there are lost with Redis. The default identity is computed either way.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import secrets
from typing import Any

from gateway.cache.identities import IdentityRecord, Snapshot
from gateway.cache.store import STORE_UNAVAILABLE
from gateway.env import RequestEnv
from gateway.imap.connection import ImapConnection
from gateway.imap.errors import CommandFailed, ImapError
from gateway.imap.metadata import get_metadata, set_metadata
from gateway.imap.responses.metadata import long_entries, parse_metadata
from gateway.offload import sized
from gateway.translators.identity.values import InvalidIdentity, identity_values
from gateway.translators.upstream_refusals import Work, refused

log = logging.getLogger(__name__)

ENTRY_ROOT = "/private/vendor/jmap-gateway/identity"
# RFC 5464 4.2.1 MAXSIZE: the entries the gateway writes stay far below this (two signatures
# of 32 KiB, two names of 256 characters, 40 addresses), so a longer one was written by
# someone else and is left unread.
MAX_ENTRY_READ = 256 * 1024
# Entries kept from one read. Any IMAP client may write entries under the root, as many as the
# server lets it; the gateway itself writes at most set.py's MAX_IDENTITIES (100) per account,
# so four times that leaves room for foreign and broken ones while bounding the parse (each
# value a JSON text of up to MAX_ENTRY_READ octets). The rest are ignored, with a log line.
MAX_ENTRIES_READ = 400
METADATA_CAPABILITIES = frozenset({"METADATA", "METADATA-SERVER"})
_ID_BYTES = 10  # 80 bits: 16 base32 characters


def default_identity_id(address: str) -> str:
    """The id of the identity of the user's own ``address``: the same wherever and whenever
    it is computed, so it survives the loss of Redis and of the METADATA entry."""
    digest = hashlib.sha256(b"identity\0" + address.lower().encode()).digest()
    return "i" + _base32(digest[:_ID_BYTES])


def new_identity_id() -> str:
    return "n" + _base32(secrets.token_bytes(_ID_BYTES))


def _base32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def entry_name(identity_id: str) -> str:
    return f"{ENTRY_ROOT}/{identity_id}"


def has_metadata(conn: ImapConnection) -> bool:
    return bool(METADATA_CAPABILITIES & conn.capabilities)


async def stored(env: RequestEnv) -> Snapshot:
    """The account's stored identities, read back from METADATA into the cache when Redis does
    not hold them (a new account, or Redis lost its data)."""
    store = env.index.identities
    snapshot = await store.snapshot()
    if snapshot.loaded:
        return snapshot
    async with env.upstream() as upstream:
        conn = await upstream.connection()
        if not has_metadata(conn):
            await store.mark_loaded()
            return await store.snapshot()
        command = get_metadata([ENTRY_ROOT], depth="1", max_size=MAX_ENTRY_READ)
        result = await conn.execute(command)
    if long_entries(result.tagged.code):
        log.warning("identity entries longer than %d octets left unread", MAX_ENTRY_READ)
    entries: dict[str, bytes] = {}
    ignored = 0
    for response in result.data("METADATA"):
        for name, value in parse_metadata(response).values.items():
            if value is None or name in entries:
                continue
            if len(entries) < MAX_ENTRIES_READ:
                entries[name] = value
            else:
                ignored += 1
    if ignored:
        log.warning(
            "%d identity entries beyond the first %d left unread", ignored, MAX_ENTRIES_READ
        )
    size = sum(len(value) for value in entries.values())
    await store.fill(await sized(size, _records, entries))
    return await store.snapshot()


def _records(entries: dict[str, bytes]) -> dict[str, IdentityRecord]:
    records: dict[str, IdentityRecord] = {}
    prefix = ENTRY_ROOT.lower() + "/"
    for name, value in entries.items():
        identity_id = name[len(prefix) :] if name.startswith(prefix) else ""
        if not identity_id or "/" in identity_id:
            continue
        if len(value) > MAX_ENTRY_READ:
            # A server that ignored MAXSIZE (RFC 5464 4.2.1): not one the gateway wrote.
            log.warning(
                "identity entry %s longer than %d octets left out", identity_id, MAX_ENTRY_READ
            )
            continue
        try:
            records[identity_id] = from_entry(identity_id, value)
        except (InvalidIdentity, ValueError) as exc:
            # Someone else wrote it (any IMAP client may): the identity is left out, not guessed.
            log.warning("identity entry %s is not one the gateway wrote: %s", identity_id, exc)
    return records


def to_entry(record: IdentityRecord) -> bytes:
    """The entry's value: the identity's JMAP properties the user sets, as JSON."""
    value = {
        "name": record.name,
        "email": record.email,
        "replyTo": record.reply_to,
        "bcc": record.bcc,
        "textSignature": record.text_signature,
        "htmlSignature": record.html_signature,
    }
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def from_entry(identity_id: str, value: bytes) -> IdentityRecord:
    data: Any = json.loads(value)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    values = identity_values(data, creating=True)
    return IdentityRecord(id=identity_id, may_delete=True, **values)


async def write(env: RequestEnv, record: IdentityRecord, *, created: bool) -> None:
    """Keep ``record``: in its METADATA entry first where the upstream has METADATA (a refusal
    there is the SetError of this identity, and nothing is written), then in Redis."""
    await _upstream(env, {entry_name(record.id): to_entry(record)})
    try:
        await env.index.identities.put(record, created=created)
    except STORE_UNAVAILABLE:
        await _distrust_cache(env)
        raise


async def erase(env: RequestEnv, identity_id: str) -> None:
    """Remove the identity: its METADATA entry first (NIL), then the cached copy."""
    await _upstream(env, {entry_name(identity_id): None})
    try:
        await env.index.identities.remove(identity_id)
    except STORE_UNAVAILABLE:
        await _distrust_cache(env)
        raise


async def _distrust_cache(env: RequestEnv) -> None:
    """The server's entry changed but the cached copy did not: the cache, still marked loaded,
    would hide the change (a created identity invisible, so a client's retry makes a second
    one) until Redis lost its data. Unmarked, the next read fills it from the server again
    (without METADATA it only marks the hash, the only copy, loaded again)."""
    with contextlib.suppress(*STORE_UNAVAILABLE):
        await env.index.identities.forget()


async def _upstream(env: RequestEnv, values: dict[str, bytes | None]) -> None:
    async with env.upstream() as upstream:
        conn = await upstream.connection()
        if not has_metadata(conn):
            return
        try:
            await conn.execute(set_metadata(values))
        except CommandFailed as exc:
            raise refused(exc, Work.IDENTITY) from exc
        except ImapError:
            # Cut or timed out: whether the server kept the change is unknown, so the cache
            # is read back from the server next time rather than trusted.
            await _distrust_cache(env)
            raise

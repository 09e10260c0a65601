"""Email/parse (RFC 8621 4.9): blobs read as messages, without importing them.

Each blob is read whole (up to the upload limit and within the request's blob budget; past
either it is notParsable) by blob_read, which takes its own upstream connection for a message
blob; nothing else here needs the upstream. The Email is rendered by the same code as
Email/get's (render.py), from the octets at hand.

Its parts must be downloadable, so their blob ids name something that serves the octets
again. The parts of a whole message (``M``) are the upstream's own sections, and so are
those of a message/rfc822 part (``P``), numbered below it (RFC 3501 6.4.5): both are
streamed from the upstream on download. The parts of any other blob (an upload, a part the
upstream does not look into, such as an ``.eml`` sent as application/octet-stream) get
``S`` ids, cut from the blob when read; a blob whose own id nests parts as deep as ``S``
ids go (blob_ids.MAX_PART_NESTING) is notParsable, as its parts could not be named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from gateway.cache.emails import decode_value
from gateway.env import RequestEnv
from gateway.jmap.dispatch import CallContext
from gateway.jmap.errors import MethodError
from gateway.jmap.standard import ArgReader, as_id_list
from gateway.mime.bodyparts import BodyPart, from_plain, parse_cost
from gateway.mime.bodyvalues import body_values, preview
from gateway.mime.headers import parse_header_block
from gateway.offload import sized
from gateway.translators.email.blob_ids import (
    BlobRef,
    find_part,
    parse_blob_id,
    part_blob_id,
    part_of_blob_id,
    parts_nameable,
)
from gateway.translators.email.blob_read import (
    BlobTooLarge,
    message_limit,
    message_structure,
    read_blob,
)
from gateway.translators.email.properties import (
    METADATA,
    PROPERTIES,
    EmailGetArgs,
    Source,
    parse_email_get,
)
from gateway.translators.email.render import Content, render_email

# RFC 8621 4.9: the properties returned when the client names none: Email/get's, less the
# metadata, which a blob does not have.
DEFAULT_PROPERTIES: Final = tuple(p for p in PROPERTIES.defaults if p not in METADATA)

# Arguments Email/parse shares with Email/get, parsed by Email/get's own code.
_SHARED: Final = (
    "properties",
    "bodyProperties",
    "fetchTextBodyValues",
    "fetchHTMLBodyValues",
    "fetchAllBodyValues",
    "maxBodyValueBytes",
)


@dataclass(frozen=True)
class EmailParseArgs:
    account_id: str
    blob_ids: list[str]
    # properties, bodyProperties and the body value options (its ``get.ids`` is unused).
    email: EmailGetArgs


def parse_email_parse(arguments: dict[str, Any], max_objects: int) -> EmailParseArgs:
    """Check blobIds and refuse arguments Email/parse does not take, then let Email/get's
    parser check the rest, so both methods accept exactly the same properties."""
    reader = ArgReader(arguments, {"accountId", "blobIds", *_SHARED})
    blob_ids = reader.required("blobIds", as_id_list)
    reader.finish()
    # RFC 8620 2 maxObjectsInGet: Email/parse returns Email objects as a /get does.
    if len(blob_ids) > max_objects:
        raise MethodError("requestTooLarge", f"More than {max_objects} blobIds")
    email = parse_email_get({k: v for k, v in arguments.items() if k != "blobIds"}, max_objects)
    requested = email.get.properties
    # Email/get always adds "id" (RFC 8620 5.1); Email/parse returns only what is asked.
    properties = list(DEFAULT_PROPERTIES if requested is None else dict.fromkeys(requested))
    return EmailParseArgs(email.get.account_id, blob_ids, replace(email, properties=properties))


async def email_parse(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    env = ctx.env
    args = parse_email_parse(arguments, env.services.limits.max_objects_in_get)
    parsed: dict[str, dict[str, Any]] = {}
    not_parsable: list[str] = []
    not_found: list[str] = []
    # One blob at a time: at most one message is held whole.
    for blob_id in dict.fromkeys(args.blob_ids):
        try:
            data = await read_blob(env, blob_id, message_limit(env))
        except BlobTooLarge:
            not_parsable.append(blob_id)
            continue
        if data is None:
            not_found.append(blob_id)
            continue
        root = await sized(parse_cost(data), message_structure, data)
        if root is None or not parts_nameable(blob_id):
            # Parts nested deeper than blob ids name would have no blobId to download.
            not_parsable.append(blob_id)
            continue
        names = await _part_blob_ids(env, blob_id)
        parsed[blob_id] = await sized(
            parse_cost(data), _email, blob_id, data, root, args.email, names
        )
    # RFC 8621 4.9: each of the three is null when it would be empty.
    return {
        "accountId": args.account_id,
        "parsed": parsed or None,
        "notParsable": not_parsable or None,
        "notFound": not_found or None,
    }


def _email(
    blob_id: str,
    data: bytes,
    root: BodyPart,
    args: EmailGetArgs,
    part_blob_ids: Callable[[str], str],
) -> dict[str, Any]:
    values = (
        body_values(
            data,
            root,
            fetch_text=args.fetch_text,
            fetch_html=args.fetch_html,
            fetch_all=args.fetch_all,
            max_bytes=args.max_body_value_bytes,
        )
        if args.wants_body_values
        else {}
    )
    content = Content(
        headers=parse_header_block(data[: root.body_start]),
        summary=None,
        root=root,
        preview=preview(data, root) if "preview" in args.properties else "",
        values=values,
        part_blob_id=part_blob_ids,
    )
    # RFC 8621 4.9: id, mailboxIds, keywords and receivedAt are null; threadId may be, and is.
    metadata = {"blobId": blob_id, "size": len(data)}
    return render_email(args.properties, args.body_properties, content, metadata.get)


async def _part_blob_ids(env: RequestEnv, blob_id: str) -> Callable[[str], str]:
    """How the parts of the message in ``blob_id`` are named (see the module docstring)."""
    ref = parse_blob_id(blob_id)
    if ref is not None:
        email_id, outer = ref.email_id, ref.part_id
        if outer is None:
            return lambda part_id: part_blob_id(email_id, part_id)
        if await _attached_message(env, ref):
            return lambda part_id: part_blob_id(email_id, f"{outer}.{part_id}")
    return lambda part_id: part_of_blob_id(blob_id, part_id)


async def _attached_message(env: RequestEnv, ref: BlobRef) -> bool:
    """Whether a part is a message whose parts the upstream numbers below it.

    Reading the part has just cached its email's structure; if the cache lost it meanwhile,
    the parts get ``S`` ids, which serve the same octets.
    """
    kind = Source.STRUCTURE.value
    cached = (await env.index.emails.cached_kinds([kind], [ref.email_id])).get(kind, {})
    data = cached.get(ref.email_id)
    if data is None or ref.part_id is None:
        return False
    part = find_part(from_plain(decode_value(data)), ref.part_id)
    return part is not None and part.message is not None

"""Blob download of messages and parts (RFC 8620 6.2, RFC 8621 4.1.4): the upstream's octets."""

from __future__ import annotations

import email
import imaplib
import json
from email import policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

import gateway.translators.email.download as download
from tests.hostile_mail import near_boundaries
from tests.jmapclient import Jmap
from tests.mailcorpus import CORPUS
from tests.servers import Dovecot
from tests.translators.upstreams import Upstream, imap, upstream

__all__ = ["imap", "upstream"]  # fixtures


def fetched_back(imap: imaplib.IMAP4, key: str) -> bytes:
    """The message as the server holds it, read with the stdlib client."""
    assert imap.select("INBOX")[0] == "OK"
    uid = imap.uid("SEARCH", "HEADER", "X-Corpus-Key", key)[1][0].split()[0].decode()
    data = imap.uid("FETCH", uid, "(BODY.PEEK[])")[1]
    first = data[0]
    assert isinstance(first, tuple)
    return bytes(first[1])


async def only_email(jmap: Jmap, *properties: str) -> dict[str, Any]:
    (found,) = (await jmap.call("Email/get", ids=None, properties=list(properties)))["list"]
    return found  # type: ignore[no-any-return]


def url(jmap: Jmap, blob_id: str, name: str, media_type: str) -> str:
    return f"/jmap/download/{jmap.account_id}/{blob_id}/{name}?accept={media_type}"


async def test_the_whole_message_is_the_upstream_octets(
    upstream: Upstream, imap: imaplib.IMAP4, monkeypatch: pytest.MonkeyPatch
) -> None:
    jmap = upstream.jmap
    # Small pieces, so the message arrives in several partial fetches.
    monkeypatch.setattr(download, "CHUNK", 100)
    assert imap.append("INBOX", "", None, CORPUS["mixed_attachments"])[0] == "OK"
    found = await only_email(jmap, "blobId", "size")
    # identity: the Content-Length of the octets themselves (a coding drops it: chunked).
    response = await jmap.http.get(
        url(jmap, found["blobId"], "m.eml", "message/rfc822"),
        auth=jmap.auth,
        headers={"accept-encoding": "identity"},
    )
    assert response.status_code == 200
    raw = fetched_back(imap, "mixed_attachments")
    assert response.content == raw
    assert int(response.headers["content-length"]) == len(raw) == found["size"]
    assert response.headers["content-type"] == "message/rfc822"
    assert response.headers["content-disposition"].startswith('attachment; filename="m.eml"')


@pytest.mark.parametrize("key", ["mixed_attachments", "related_inline", "nested_rfc822"])
async def test_every_part_is_its_decoded_content(
    upstream: Upstream, imap: imaplib.IMAP4, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    jmap = upstream.jmap
    # Small pieces: each part is cut from the message, and decoded, across several fetches.
    monkeypatch.setattr(download, "CHUNK", 100)
    assert imap.append("INBOX", "", None, CORPUS[key])[0] == "OK"
    found = await only_email(jmap, "bodyStructure")
    found["bodyStructure"] = await _with_sub_parts(jmap)
    parsed = email.message_from_bytes(fetched_back(imap, key), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    leaves = [p for p in parsed.walk() if not p.is_multipart() or _is_message(p)]
    parts = _leaves(found["bodyStructure"])
    assert len(parts) == len(_top_leaves(parsed))
    for part, source in zip(parts, _top_leaves(parsed), strict=True):
        response = await jmap.http.get(
            url(jmap, part["blobId"], part["name"] or "part", part["type"]), auth=jmap.auth
        )
        assert response.status_code == 200, part
        if _is_message(source):
            # RFC 8621 4.1.4: an attached message's blob is the message itself.
            expected = source.get_payload()[0].as_bytes()
            assert (
                email.message_from_bytes(response.content).keys()
                == email.message_from_bytes(expected).keys()
            )
        else:
            assert response.content == source.get_payload(decode=True), part
        assert part["size"] == len(response.content)
    assert leaves


async def _with_sub_parts(jmap: Jmap) -> dict[str, Any]:
    properties = ["partId", "blobId", "size", "name", "type", "subParts"]
    (found,) = (
        await jmap.call(
            "Email/get", ids=None, properties=["bodyStructure"], bodyProperties=properties
        )
    )["list"]
    return found["bodyStructure"]  # type: ignore[no-any-return]


def _is_message(part: Any) -> bool:
    return part.get_content_type() in ("message/rfc822", "message/global")


def _top_leaves(message: EmailMessage) -> list[Any]:
    """Leaves of the tree in order, attached messages as one leaf (as bodyStructure does)."""
    if _is_message(message) and message.get_content_maintype() == "message":
        return [message]
    if message.is_multipart():
        return [leaf for child in message.iter_parts() for leaf in _top_leaves(child)]
    return [message]


def _leaves(part: dict[str, Any]) -> list[dict[str, Any]]:
    if part.get("subParts"):
        return [leaf for child in part["subParts"] for leaf in _leaves(child)]
    return [part]


async def test_unknown_and_foreign_blobs_are_not_found(
    upstream: Upstream, imap: imaplib.IMAP4
) -> None:
    jmap, server, http = upstream.jmap, upstream.server, upstream.jmap.http
    assert imap.append("INBOX", "", None, CORPUS["plain_7bit"])[0] == "OK"
    found = await only_email(jmap, "blobId", "textBody")
    stranger_name = server.fresh_user()
    stranger = await Jmap(http, stranger_name, server.users[stranger_name]).start()
    for blob_id in (found["blobId"], found["textBody"][0]["blobId"]):
        # Another account's blob, asked for with the stranger's own account id.
        response = await http.get(url(stranger, blob_id, "x", "a/b"), auth=stranger.auth)
        assert response.status_code == 404
        # ... or with the owner's account id.
        response = await http.get(url(jmap, blob_id, "x", "a/b"), auth=stranger.auth)
        assert response.status_code == 404
    for blob_id in (
        "Mnothere",
        "Pnothere_1",
        found["blobId"][:-1],
        "P" + found["blobId"][1:] + "_9",
    ):
        response = await http.get(url(jmap, blob_id, "x", "a/b"), auth=jmap.auth)
        assert response.status_code == 404, blob_id


async def test_whole_messages_are_fetched_and_kept_within_budgets(
    dovecot: Dovecot, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With tiny budgets, one message per FETCH and none kept for the body values (each
    part fetched on its own instead): the answers are those of roomy budgets."""
    import gateway.translators.email.fetch as fetch
    from tests.conftest import fresh_jmap

    async def answers(jmap: Jmap) -> list[Any]:
        client = dovecot.client(jmap.username)
        for key in ("plain_7bit", "alternative", "mixed_attachments"):
            assert client.append("INBOX", "", None, CORPUS[key])[0] == "OK"
        client.logout()
        found = await jmap.call(
            "Email/get",
            ids=None,
            properties=["bodyStructure", "bodyValues", "textBody", "attachments"],
            bodyProperties=["partId", "type", "size", "name"],
            fetchAllBodyValues=True,
        )
        return sorted(json.dumps(e, sort_keys=True) for e in found["list"])

    roomy = await answers(await fresh_jmap(dovecot, http))
    monkeypatch.setattr(fetch, "WHOLE_PER_FETCH", 1)
    monkeypatch.setattr(fetch, "WHOLE_KEPT", 1)
    tight = await answers(await fresh_jmap(dovecot, http))
    strip = [json.loads(e) for e in roomy], [json.loads(e) for e in tight]
    for listed in strip:
        for found in listed:
            found.pop("id")
    assert sorted(map(repr, strip[0])) == sorted(map(repr, strip[1]))
    assert all(json.loads(e)["bodyValues"] for e in tight)


async def test_parts_are_what_the_gateway_parsed_where_the_upstream_parses_otherwise(
    dovecot: Dovecot, redis_url: str
) -> None:
    """Lines that start like the boundary and go on are not delimiters (RFC 2046 5.1.1; the
    stdlib agrees), but Dovecot takes each for one: its BODY[1] is empty where the gateway's
    part 1 holds "last". Downloads cut the gateway's parts from the message, so bodyStructure,
    bodyValues and the download agree (the download of a part Dovecot numbered otherwise
    used to stop short of its Content-Length, a broken response)."""
    from gateway.app import create_app
    from tests.conftest import gateway_settings, running_gateway

    message = near_boundaries(50)
    user = dovecot.fresh_user()
    client = dovecot.client(user)
    assert client.append("INBOX", "", None, message)[0] == "OK"
    assert client.select("INBOX")[0] == "OK"
    upstream_part = client.fetch("1", "(BODY.PEEK[1])")[1][0]
    assert isinstance(upstream_part, tuple) and upstream_part[1] == b""
    parsed = email.message_from_bytes(message, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    (expected,) = [p.get_payload(decode=True) for p in parsed.iter_parts()]
    settings = gateway_settings(dovecot.url, redis_url)
    async with (
        running_gateway(settings, create_app(settings)) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        jmap = await Jmap(http, user, dovecot.users[user]).start()
        (part,) = (await only_email(jmap, "textBody"))["textBody"]
        response = await http.get(url(jmap, part["blobId"], "x", "text/plain"), auth=jmap.auth)
        # Another request: the structure is cached, the message is not, so the value is
        # fetched on its own, and Dovecot's part 1 is not the gateway's.
        (found,) = (
            await jmap.call(
                "Email/get", ids=None, properties=["bodyValues"], fetchTextBodyValues=True
            )
        )["list"]
    assert response.status_code == 200
    assert response.content == expected == b"last"
    assert int(response.headers["content-length"]) == part["size"] == len(expected)
    assert found["bodyValues"][part["partId"]]["value"] == "last"
    client.logout()

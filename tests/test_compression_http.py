"""Compressed responses through a running gateway (RFC 9110 8.4, 12.5.3, 12.5.5): the API,
the Session and downloads, read raw off the wire and decoded with independent decoders; what
is not encoded; Vary; a streamed download whose first octets arrive while the upstream is
still held; and real clients (httpx's own decoding, jmapc)."""

from __future__ import annotations

import asyncio
import imaplib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import gateway.translators.email.download as download
from tests.conftest import gateway_settings, running_gateway
from tests.faultproxy import FaultProxy
from tests.jmapclient import CORE, MAIL, Jmap
from tests.servers import Dovecot
from tests.test_compression import decoder

CODINGS = ("gzip", "br", "zstd")
LIST_PROPERTIES = ["from", "subject", "receivedAt", "keywords", "preview"]


def message(n: int, lines: int = 40) -> bytes:
    body = "".join(
        f"Line {i} of message {n}: the quarterly figures, as discussed.\r\n" for i in range(lines)
    )
    return (
        f"From: Sender {n} <sender{n}@example.com>\r\nTo: someone@example.com\r\n"
        f"Subject: Report number {n}\r\nMessage-ID: <m{n}@example.com>\r\n"
        f"Date: Mon, 7 Dec 2026 10:{n % 60:02d}:00 +0000\r\n\r\n{body}"
    ).encode()


async def raw(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    accept: str | None,
    auth: httpx.Auth | None = None,
    **kwargs: Any,
) -> tuple[httpx.Response, bytes]:
    """The response and its body exactly as sent (not decoded); ``accept`` None sends no
    Accept-Encoding field at all."""
    request = http.build_request(method, path, **kwargs)
    if accept is None:
        del request.headers["accept-encoding"]
    else:
        request.headers["accept-encoding"] = accept
    response = await http.send(request, auth=auth, stream=True)
    try:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()
    return response, body


def decoded(response: httpx.Response, body: bytes) -> bytes:
    """The body with its Content-Encoding undone by an independent decoder."""
    coding = response.headers.get("content-encoding")
    return decoder(coding)()(body) if coding else body


def varies(response: httpx.Response) -> bool:
    return "accept-encoding" in response.headers.get("vary", "").lower()


@pytest.fixture
async def mailbox(dovecot: Dovecot, http: httpx.AsyncClient) -> Jmap:
    """A fresh user with 60 messages in INBOX and 30 folders, appended by plain imaplib."""
    user = dovecot.fresh_user()
    imap = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
    imap.login(user, dovecot.users[user])
    for n in range(60):
        assert imap.append("INBOX", "(\\Seen)" if n % 3 else "", None, message(n))[0] == "OK"
    for n in range(30):
        assert imap.create(f"Folder{n}")[0] == "OK"
    imap.logout()
    return await Jmap(http, user, dovecot.users[user]).start()


def inbox_screen(jmap: Jmap, inbox: str) -> dict[str, Any]:
    """The open-INBOX request: newest 50 and their list properties."""
    return {
        "using": [CORE, MAIL],
        "methodCalls": [
            [
                "Email/query",
                {
                    "accountId": jmap.account_id,
                    "filter": {"inMailbox": inbox},
                    "sort": [{"property": "receivedAt", "isAscending": False}],
                    "limit": 50,
                    "calculateTotal": True,
                },
                "q",
            ],
            [
                "Email/get",
                {
                    "accountId": jmap.account_id,
                    "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                    "properties": LIST_PROPERTIES,
                },
                "g",
            ],
        ],
    }


@pytest.mark.parametrize("coding", CODINGS)
async def test_api_session_and_mailbox_get_decode_to_the_same_json(
    mailbox: Jmap, coding: str
) -> None:
    jmap, http = mailbox, mailbox.http
    inbox = next(m["id"] for m in (await jmap.mailboxes()).values() if m["role"] == "inbox")
    screen = inbox_screen(jmap, inbox)
    folders = {
        "using": [CORE, MAIL],
        "methodCalls": [["Mailbox/get", {"accountId": jmap.account_id}, "m"]],
    }
    for method, path, kwargs in (
        ("GET", "/jmap/session", {}),
        ("POST", "/jmap/api/", {"json": screen}),
        ("POST", "/jmap/api/", {"json": folders}),
    ):
        plain, plain_body = await raw(http, method, path, None, auth=jmap.auth, **kwargs)
        encoded, encoded_body = await raw(http, method, path, coding, auth=jmap.auth, **kwargs)
        assert plain.status_code == encoded.status_code == 200
        assert "content-encoding" not in plain.headers
        assert encoded.headers["content-encoding"] == coding
        assert varies(plain) and varies(encoded)
        assert int(encoded.headers["content-length"]) == len(encoded_body) < len(plain_body)
        assert int(plain.headers["content-length"]) == len(plain_body)
        assert json.loads(decoded(encoded, encoded_body)) == json.loads(plain_body)
    got = json.loads(plain_body)["methodResponses"][0][1]["list"]
    assert {f"Folder{n}" for n in range(30)} <= {m["name"] for m in got}


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        (None, None),
        ("identity", None),
        ("gzip, deflate, br, zstd", "br"),
        ("gzip;q=1, br;q=0.5", "gzip"),
        ("br;q=0, *", "zstd"),
        ("*;q=0", None),
        ("zstd;q=0.1, gzip;q=0.2", "gzip"),
    ],
)
async def test_accept_encoding_choices(
    http: httpx.AsyncClient, alice: httpx.BasicAuth, accept: str | None, coding: str | None
) -> None:
    response, body = await raw(http, "GET", "/jmap/session", accept, auth=alice)
    assert response.status_code == 200
    assert response.headers.get("content-encoding") == coding
    assert varies(response)
    assert json.loads(decoded(response, body))["username"] == "alice"


async def test_small_and_error_responses_are_not_encoded(
    http: httpx.AsyncClient, alice: httpx.BasicAuth
) -> None:
    echo = {"using": [CORE], "methodCalls": [["Core/echo", {"hello": True}, "e"]]}
    response, body = await raw(http, "POST", "/jmap/api/", "br", auth=alice, json=echo)
    assert response.status_code == 200 and "content-encoding" not in response.headers
    assert varies(response) and json.loads(body)["methodResponses"][0][1] == {"hello": True}
    refused, body = await raw(http, "GET", "/jmap/session", "br")  # no credentials
    assert refused.status_code == 401 and "content-encoding" not in refused.headers
    assert varies(refused) and json.loads(body)["status"] == 401


@pytest.mark.parametrize("coding", CODINGS)
async def test_a_large_answer_is_encoded_beside_the_loop(
    http: httpx.AsyncClient, alice: httpx.BasicAuth, coding: str
) -> None:
    """Core/echo of 300 kB: an answer over offload's 64 KiB, encoded in the worker pool."""
    words = {f"key{n}": f"value {n} " * 8 for n in range(4000)}
    echo = {"using": [CORE], "methodCalls": [["Core/echo", words, "e"]]}
    response, body = await raw(http, "POST", "/jmap/api/", coding, auth=alice, json=echo)
    assert response.headers["content-encoding"] == coding
    assert int(response.headers["content-length"]) == len(body) < 100_000
    assert json.loads(decoded(response, body))["methodResponses"][0][1] == words


async def test_text_downloads_are_encoded_images_are_not(mailbox: Jmap) -> None:
    jmap, http = mailbox, mailbox.http
    text = b"".join(message(n) for n in range(20))
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 80
    for data, media, coding in (
        (text, "text/plain", "br"),
        (text, "message/rfc822", "br"),
        (text, "text/html", "zstd"),  # a streamed body: zstd first among equals
        (png, "image/png", None),
        (text, "application/octet-stream", None),
        (b"short text", "text/plain", None),  # under the minimum size
        # Pieces over offload's 64 KiB: encoded beside the loop, in order.
        (b"".join(message(n, lines=400) for n in range(12)), "text/plain", "br"),
    ):
        blob = await jmap.upload(data, media)
        path = f"/jmap/download/{jmap.account_id}/{blob}/x?accept={media}"
        offered = "gzip, br, zstd" if coding == "zstd" else "gzip, br"
        response, body = await raw(http, "GET", path, offered, auth=jmap.auth)
        assert response.status_code == 200, media
        assert response.headers.get("content-encoding") == coding, media
        assert varies(response)
        assert decoded(response, body) == data
        if coding is None:
            assert int(response.headers["content-length"]) == len(data)
        else:
            assert len(body) < len(data) / 3


@pytest.fixture
async def proxied(dovecot: Dovecot, redis_url: str) -> AsyncIterator[tuple[FaultProxy, str]]:
    async with FaultProxy("127.0.0.1", dovecot.imap_port) as proxy:
        settings = gateway_settings(proxy.url, redis_url)
        async with running_gateway(settings) as url:
            yield proxy, url


@pytest.mark.parametrize("coding", CODINGS)
async def test_a_streamed_download_arrives_while_the_upstream_is_held(
    dovecot: Dovecot,
    proxied: tuple[FaultProxy, str],
    coding: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The message is read in pieces (one partial FETCH each); with the second FETCH held
    back by the proxy, the client already decodes the whole first piece."""
    proxy, url = proxied
    monkeypatch.setattr(download, "CHUNK", 2000)
    user = dovecot.fresh_user()
    original = message(1, lines=200)  # about 12 KB: six pieces
    imap = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
    imap.login(user, dovecot.users[user])
    assert imap.append("INBOX", "", None, original)[0] == "OK"
    imap.logout()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        jmap = await Jmap(http, user, dovecot.users[user]).start()
        (email,) = (await jmap.call("Email/get", ids=None, properties=["blobId"]))["list"]
        held = proxy.hold(rb"BODY\.PEEK\[\]<2000\.")
        path = f"/jmap/download/{jmap.account_id}/{email['blobId']}/m.eml?accept=message/rfc822"
        request = http.build_request("GET", path, headers={"accept-encoding": coding})
        response = await http.send(request, auth=jmap.auth, stream=True)
        try:
            assert response.headers["content-encoding"] == coding
            assert "content-length" not in response.headers
            decode = decoder(coding)()
            chunks = response.aiter_raw()
            got = b""
            async with asyncio.timeout(10):
                while len(got) < 2000:
                    got += decode(await anext(chunks))
            # The whole first piece, decoded, while the FETCH of the second waits.
            assert got == original[:2000]
            assert not held.released.is_set()
            held.release()
            async for chunk in chunks:
                got += decode(chunk)
        finally:
            await response.aclose()
    assert got == original


async def test_httpx_decodes_every_coding_itself(mailbox: Jmap) -> None:
    """A real client's own decoders (httpx with brotli and zstandard) read every answer."""
    jmap, http = mailbox, mailbox.http
    for coding in CODINGS:
        response = await http.get(
            "/jmap/session", auth=jmap.auth, headers={"accept-encoding": coding}
        )
        assert response.headers["content-encoding"] == coding
        assert response.json()["primaryAccounts"][MAIL] == jmap.account_id
        got = await http.post(
            "/jmap/api/",
            json={
                "using": [CORE, MAIL],
                "methodCalls": [["Mailbox/get", {"accountId": jmap.account_id}, "m"]],
            },
            auth=jmap.auth,
            headers={"accept-encoding": coding},
        )
        assert got.headers["content-encoding"] == coding
        assert len(got.json()["methodResponses"][0][1]["list"]) > 30


@pytest.mark.parametrize("coding", CODINGS)
async def test_curl_decodes_every_coding(mailbox: Jmap, coding: str, dovecot: Dovecot) -> None:
    """curl, a client outside Python with libcurl's own decoders, reads the screen."""
    jmap = mailbox
    inbox = next(m["id"] for m in (await jmap.mailboxes()).values() if m["role"] == "inbox")
    screen = json.dumps(inbox_screen(jmap, inbox))
    curl = await asyncio.create_subprocess_exec(
        *("curl", "--silent", "--show-error", "--compressed", "--dump-header", "-"),
        *("--header", f"Accept-Encoding: {coding}", "--header", "Content-Type: application/json"),
        *("--user", f"{jmap.username}:{dovecot.users[jmap.username]}"),
        *("--data-binary", screen, str(jmap.http.base_url.join("/jmap/api/"))),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(curl.communicate(), 30)
    assert curl.returncode == 0
    head, _, body = out.partition(b"\r\n\r\n")
    assert f"content-encoding: {coding}".encode() in head.lower()
    plain = await jmap.http.post(
        "/jmap/api/",
        content=screen,
        auth=jmap.auth,
        headers={"accept-encoding": "identity", "content-type": "application/json"},
    )
    assert json.loads(body) == plain.json()
    assert len(json.loads(body)["methodResponses"][1][1]["list"]) == 50

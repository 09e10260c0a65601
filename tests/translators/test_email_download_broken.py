"""Parts with broken base64 download on Dovecot as on Cyrus: decoded leniently.

Dovecot's ``BINARY`` refuses such parts (``NO [PARSE]`` for octets outside the alphabet or
padding inside the data; for data that stops mid-group it ends the session), so they could not
be downloaded at all. The gateway now reads the raw section and decodes it itself. The ground
truth is twofold: Cyrus's own ``BINARY`` of the same octets, read with the stdlib client, and
the stdlib's decoding (``get_payload(decode=True)``) where the stdlib decodes the damage (it
gives up on a lone last character and stops at padding inside the data; the gateway, like
Cyrus, decodes past both, and it reports the same octets as the part's size).
"""

from __future__ import annotations

import base64
import email
import imaplib
import random
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest

import gateway.translators.email.download as download
from tests.cyrus import Cyrus
from tests.servers import Dovecot
from tests.translators.upstreams import Upstream, imap, ok, upstream

__all__ = ["imap", "upstream"]  # fixtures

_rng = random.Random(12)
_LARGE = base64.encodebytes(bytes(_rng.randrange(256) for _ in range(3000))).replace(b"\n", b"\r\n")
BROKEN = {
    "char": b"SGVsbG8g*V29ybGQh\r\nSGVsbG8=\r\n",
    "unpadded": b"SGVsbG8gV29ybGQ\r\n",
    "lone": b"SGVsbG8gV29ybGQhS\r\n",
    "padding-inside": b"SGVsbG8=V29ybGQh\r\n",
    "junk": b"this is not base64 at all!\r\n",
    "large": _LARGE[:1500] + b"!*!\r\n" + _LARGE[1500:] + b"QQ\r\n",
}
# Where the stdlib's lenient decoding is the reference too.
STDLIB_AGREES = {"char", "unpadded", "junk", "large"}


def message() -> bytes:
    parts = [b"Content-Type: text/plain\r\n\r\nhello\r\n"]
    for name, body in BROKEN.items():
        parts.append(
            b"Content-Type: application/octet-stream; name=" + name.encode() + b"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + body
        )
    return (
        b"From: a@example.org\r\nSubject: broken base64\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
        + b"".join(b"--XX\r\n" + part for part in parts)
        + b"--XX--\r\n"
    )


def cyrus_binary(cyrus: Cyrus, raw: bytes) -> dict[str, bytes]:
    """Part name -> what Cyrus's BINARY makes of it, asked with the stdlib client."""
    user = cyrus.fresh_user()
    client = cyrus.client(user)
    try:
        ok(client.append("INBOX", None, None, raw))
        ok(client.select("INBOX", readonly=True))
        decoded = {}
        for number, name in enumerate(BROKEN, start=2):
            data = ok(client.fetch("1", f"(BINARY.PEEK[{number}])"))
            decoded[name] = bytes(data[0][1])
        return decoded
    finally:
        client.logout()


async def parts(upstream: Upstream) -> dict[str, dict[str, Any]]:
    (found,) = (
        await upstream.jmap.call(
            "Email/get",
            ids=None,
            properties=["bodyStructure"],
            bodyProperties=["partId", "blobId", "size", "name", "subParts"],
        )
    )["list"]
    return {p["name"]: p for p in found["bodyStructure"]["subParts"] if p["name"]}


@pytest.mark.parametrize("chunk", [1024 * 1024, 100])
async def test_broken_base64_parts_download(
    upstream: Upstream,
    imap: imaplib.IMAP4,
    cyrus: Cyrus,
    monkeypatch: pytest.MonkeyPatch,
    chunk: int,
) -> None:
    # 100: the large part comes in many pieces, each decoded as it arrives.
    monkeypatch.setattr(download, "CHUNK", chunk)
    raw = message()
    ok(imap.append("INBOX", None, None, raw))
    expected = cyrus_binary(cyrus, raw)
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    stdlib = {p.get_filename(): p.get_payload(decode=True) for p in parsed.iter_attachments()}
    found = await parts(upstream)
    jmap = upstream.jmap
    for name in BROKEN:
        part = found[name]
        response = await jmap.http.get(
            f"/jmap/download/{jmap.account_id}/{part['blobId']}/{name}", auth=jmap.auth
        )
        assert response.status_code == 200, (name, response.text)
        assert response.content == expected[name], name
        assert part["size"] == len(response.content), name
        if name in STDLIB_AGREES:
            assert response.content == stdlib[name], name
    assert stdlib["lone"] != expected["lone"] and stdlib["padding-inside"] != expected["lone"]


def test_dovecot_refuses_to_decode_them(dovecot: Dovecot) -> None:
    """The fact the fallback is for, kept checked (Cyrus decodes them all itself): Dovecot's
    BINARY answers NO, or ends the session, for every one of the parts."""
    user = dovecot.fresh_user()
    client = dovecot.client(user)
    try:
        ok(client.append("INBOX", None, None, message()))
    finally:
        client.logout()
    for number, name in enumerate(BROKEN, start=2):
        client = dovecot.client(user)
        try:
            ok(client.select("INBOX", readonly=True))
            status, _ = client.fetch("1", f"(BINARY.PEEK[{number}])")
            assert status == "NO", name
        except imaplib.IMAP4.abort:
            assert name in ("unpadded", "lone", "large"), name
        finally:
            client.shutdown()

"""Content codings for responses (RFC 9110 8.4): gzip, br (RFC 7932) and zstd (RFC 8878),
chosen by the client's Accept-Encoding (RFC 9110 12.5.3).

Mobile clients pay for every octet: the "open INBOX" screen's JSON shrinks to about a quarter,
a folder list to 3 % (``bench/compression.py`` measures every coding on the gateway's own
responses). What is encoded: API responses, the Session and downloads of compressible media
types (text, JSON, XML, messages); never already-compressed types (images other than SVG,
audio, video, archives, PDF, octet-stream), bodies under :data:`MIN_SIZE` octets, partial
content, or a response that already has a coding. Every response of those routes says
``Vary: Accept-Encoding``, encoded or not (RFC 9110 12.5.5), so a shared cache never hands
one client's coding to another.

:class:`ContentEncoding` is an ASGI middleware: a body sent in one message (every JSON
response) is encoded whole, off the event loop when large (gateway.offload); a streamed body
(a download) is encoded piece by piece, each piece flushed, so the first octets still reach
the client before the upstream has sent the rest, and memory stays one piece.
"""

from __future__ import annotations

import functools
import re
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import brotli
import zstandard
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.offload import sized

# Below this many octets a body is sent as it is. Measured on the gateway's small answers
# (bench/compression.py): under ~200 octets the Content-Encoding line and the coding's framing
# eat what compressing saves; from ~500 on, a third of the octets is saved (~200) for tens of
# microseconds of CPU.
MIN_SIZE = 512

# Levels chosen on the gateway's own responses (bench/compression.py, "open INBOX": 22 kB of
# JSON). br 5: the fewest octets under a millisecond (6 gives 0.5 % fewer at 30 % more CPU
# on a MiB download; 9 and 11 cost 15-50 ms). zstd 3: within 4 % of level 6's octets at a
# third of its CPU. gzip 6: zlib's default, 8 % fewer octets than level 1, well under 1 ms.
BROTLI_QUALITY = 5
ZSTD_LEVEL = 3
GZIP_LEVEL = 6
# RFC 9659 3: a "zstd" decoder need not accept windows over 8 MB (2**23): the window is
# capped there whatever the level.
_ZSTD_MAX_WINDOW_LOG = 23

# Entries of Accept-Encoding looked at; values longer than _CACHED_BELOW are not cached, so
# a stranger's 64 KiB header cannot fill the cache.
_MAX_CODINGS = 32
_CACHED_BELOW = 256
# RFC 9110 12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")


class Encoder(Protocol):
    """A streaming encoder: each piece comes out flushed, so the client can decode it at once."""

    def piece(self, data: bytes) -> bytes: ...

    def end(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class Coding:
    """One content coding: its token, a one-shot encoder and a streaming one."""

    name: str
    encode: Callable[[bytes], bytes]
    stream: Callable[[], Encoder]


class _Gzip:
    def __init__(self) -> None:
        # wbits 31: the gzip framing (RFC 1952) around deflate, what "gzip" names.
        self._z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)

    def piece(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def end(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_FINISH)


class _Brotli:
    def __init__(self) -> None:
        self._c = brotli.Compressor(quality=BROTLI_QUALITY)

    def piece(self, data: bytes) -> bytes:
        out: bytes = self._c.process(data) + self._c.flush()
        return out

    def end(self, data: bytes) -> bytes:
        out: bytes = self._c.process(data) + self._c.finish()
        return out


_ZSTD_PARAMS = zstandard.ZstdCompressionParameters.from_level(
    ZSTD_LEVEL,
    window_log=min(
        zstandard.ZstdCompressionParameters.from_level(ZSTD_LEVEL).window_log,
        _ZSTD_MAX_WINDOW_LOG,
    ),
)


class _Zstd:
    def __init__(self) -> None:
        self._c = zstandard.ZstdCompressor(compression_params=_ZSTD_PARAMS).compressobj()

    def piece(self, data: bytes) -> bytes:
        return self._c.compress(data) + self._c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def end(self, data: bytes) -> bytes:
        return self._c.compress(data) + self._c.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


_zstd_per_thread = threading.local()


def _zstd_once(data: bytes) -> bytes:
    # One compressor per thread: a ZstdCompressor must not be used by two threads at once
    # (large bodies are encoded in the offload pool), and making one with its context costs
    # about 15 us, a fifth of encoding the open-INBOX screen.
    compressor = getattr(_zstd_per_thread, "compressor", None)
    if compressor is None:
        compressor = zstandard.ZstdCompressor(compression_params=_ZSTD_PARAMS)
        _zstd_per_thread.compressor = compressor
    encoded: bytes = compressor.compress(data)
    return encoded


# The server's preference among codings the client weighs equally, best first: brotli gives
# the fewest octets on the gateway's JSON at a cost under a millisecond, zstd nearly as few
# at less CPU, gzip is what every client has (bench/compression.py).
CODINGS: tuple[Coding, ...] = (
    Coding("br", functools.partial(brotli.compress, quality=BROTLI_QUALITY), _Brotli),
    Coding("zstd", _zstd_once, _Zstd),
    Coding("gzip", functools.partial(zlib.compress, level=GZIP_LEVEL, wbits=31), _Gzip),
)
# For streamed bodies (downloads, up to many MiB) CPU per MiB weighs more than the last few
# percent: zstd 3 costs about a tenth of brotli 5's CPU for 3 % more octets (1 MiB of the
# seeded messages: 2.9 ms against 28 ms), so zstd comes first there.
STREAMED: tuple[Coding, ...] = (CODINGS[1], CODINGS[0], CODINGS[2])
# RFC 9110 8.4.1.3: a recipient SHOULD consider "x-gzip" to be equivalent to "gzip".
_ALIASES = {"x-gzip": "gzip"}


def negotiate(accept_encoding: str | None, *, streamed: bool = False) -> Coding | None:
    """The coding to send for this Accept-Encoding value, or None for identity; among codings
    of equal weight, the first of :data:`CODINGS`, or of :data:`STREAMED` for a streamed body.

    RFC 9110 12.5.3: codings are compared case-insensitively, each with its weight (q, default
    1; q=0 means "not acceptable"); ``*`` stands for any coding not named. A request without
    the field gets identity: RFC 9110 allows any coding then, but a client that never asked
    may not decode one. Identity is sent also when nothing the gateway has is acceptable, even
    if the client refused identity: the representation is still correct, and it is what
    RFC 9110 suggests over a 415. Short values are cached: clients send the same few.
    """
    if not accept_encoding:
        return None
    preference = STREAMED if streamed else CODINGS
    if len(accept_encoding) < _CACHED_BELOW:
        return _negotiate_cached(accept_encoding, preference)
    return _negotiate(accept_encoding, preference)


def _negotiate(accept_encoding: str, preference: tuple[Coding, ...]) -> Coding | None:
    weights: dict[str, float] = {}
    for entry in accept_encoding.split(",", _MAX_CODINGS)[:_MAX_CODINGS]:
        token, _, params = entry.partition(";")
        name = token.strip().lower()
        weight = _weight(params)
        if name and weight is not None:
            name = _ALIASES.get(name, name)
            weights[name] = max(weight, weights.get(name, 0.0))
    star = weights.get("*", 0.0)
    best: Coding | None = None
    best_weight = 0.0
    for coding in preference:
        weight = weights.get(coding.name, star)
        if weight > best_weight:
            best, best_weight = coding, weight
    return best


_negotiate_cached = functools.lru_cache(maxsize=256)(_negotiate)


def _weight(params: str) -> float | None:
    """The q parameter's value (1 when absent), or None when the entry does not follow
    RFC 9110 12.5.3's grammar (then it is ignored, as if the client had not sent it)."""
    params = params.strip()
    if not params:
        return 1.0
    key, _, value = params.partition("=")
    value = value.strip()
    if key.strip().lower() != "q" or not _QVALUE.fullmatch(value):
        return None
    return float(value)


# Media types worth encoding, beyond text/*, +json and +xml (RFC 6839 suffixes).
_COMPRESSIBLE = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/ecmascript",
        "application/mbox",
        "application/rtf",
        "application/x-ndjson",
        "application/pgp-keys",
        "application/pgp-signature",
        "application/pkcs7-signature",
        "message/rfc822",
        "message/global",
        "message/delivery-status",
        "message/global-delivery-status",
        "message/disposition-notification",
        "message/global-headers",
    }
)


def compressible(content_type: str) -> bool:
    """Whether a body of this Content-Type shrinks when encoded. Images (but SVG), audio,
    video, archives, PDF and octet-stream are already compressed, or unknown: left alone."""
    media = content_type.partition(";")[0].strip().lower()
    if media.startswith("text/") or media in _COMPRESSIBLE:
        return True
    return media.endswith(("+json", "+xml"))


class ContentEncoding:
    """ASGI middleware encoding the responses of the paths ``applies`` accepts (see the
    module docstring)."""

    def __init__(self, app: ASGIApp, applies: Callable[[str], bool]) -> None:
        self.app = app
        self.applies = applies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.applies(scope["path"]):
            await self.app(scope, receive, send)
            return
        accept = None
        for key, value in scope["headers"]:
            if key == b"accept-encoding":
                # Several fields are one list (RFC 9110 5.3).
                text = value.decode("latin-1")
                accept = text if accept is None else f"{accept},{text}"
        await self.app(scope, receive, _Responder(send, accept).send)


class _Responder:
    """One response on its way out: holds its start until the first body message says
    whether the body comes whole or streamed, then encodes it or lets it pass."""

    def __init__(self, send: Send, accept_encoding: str | None) -> None:
        self._send = send
        self._accept = accept_encoding
        self._start: Message | None = None
        self._encoder: Encoder | None = None
        self._passing = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self._start = message
            return
        if kind != "http.response.body" or self._passing:
            await self._send(message)
            return
        if self._encoder is not None:
            await self._stream(message)
            return
        start = self._start
        assert start is not None, "a body before its start"
        headers = [(k, v) for k, v in start["headers"] if k != b"vary"]
        vary = [v for k, v in start["headers"] if k == b"vary"]
        headers.append((b"vary", b", ".join([*vary, b"Accept-Encoding"])))
        whole = not message.get("more_body", False)
        coding = (
            negotiate(self._accept, streamed=not whole)
            if _encodable(start["status"], start["headers"], message)
            else None
        )
        if coding is None:
            self._passing = True
            await self._send({**start, "headers": headers})
            await self._send(message)
            return
        headers = [(k, v) for k, v in headers if k != b"content-length"]
        headers.append((b"content-encoding", coding.name.encode("ascii")))
        if whole:
            body = bytes(message.get("body", b""))
            encoded = await sized(len(body), coding.encode, body)
            headers.append((b"content-length", str(len(encoded)).encode("ascii")))
            self._passing = True
            await self._send({**start, "headers": headers})
            await self._send({**message, "body": encoded})
            return
        self._encoder = coding.stream()
        await self._send({**start, "headers": headers})
        await self._stream(message)

    async def _stream(self, message: Message) -> None:
        encoder = self._encoder
        assert encoder is not None
        data = bytes(message.get("body", b""))
        more = message.get("more_body", False)
        encode = encoder.piece if more else encoder.end
        out = await sized(len(data), encode, data) if data or not more else b""
        if out or not more:
            await self._send({"type": "http.response.body", "body": out, "more_body": more})


def _encodable(status: int, headers: list[tuple[bytes, bytes]], first: Message) -> bool:
    """Whether the response starting with ``headers`` and body message ``first`` is worth
    encoding: a full 2xx representation of a compressible type, not encoded yet, not small."""
    if not 200 <= status < 300 or status in (204, 206):
        # 206 and Content-Range: a range of the identity octets cannot be re-encoded
        # (RFC 9110 14.3: a range applies to the representation's octets after coding).
        return False
    length: int | None = None
    media = ""
    for key, value in headers:
        if key in (b"content-encoding", b"content-range"):
            return False
        if key == b"content-length":
            length = int(value)
        elif key == b"content-type":
            media = value.decode("latin-1")
    if not compressible(media):
        return False
    if length is None and not first.get("more_body", False):
        length = len(first.get("body", b""))
    return length is None or length >= MIN_SIZE

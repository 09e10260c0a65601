"""Hostile messages: what any stranger can deliver to a user to make the gateway work hard.

Each builder returns the octets of one whole message (CRLF line ends, as APPEND sends and an
IMAP server stores them), starting with ``X-Corpus-Key: <key>`` so a test can find it again,
and sized by default like the inputs of the hostile review that found the problems (issue
12): inputs on which the gateway's earlier code took seconds to minutes of its event loop.
Tests and the stall benchmark share them; ``CORPUS`` lists every one by its key.

Messages are written as bytes, never generated with the ``email`` package, which would
repair (or refuse to write) what these messages get wrong on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

CRLF = b"\r\n"


def _message(key: str, fields: Iterable[bytes], body: bytes = b"Hello.\r\n") -> bytes:
    """A message with ``fields`` (each one whole field, folded with CRLF if at all)."""
    header = [
        b"X-Corpus-Key: " + key.encode(),
        b"From: Stranger <stranger@example.net>",
        b"To: victim@example.org",
        b"Date: Mon, 01 Jul 2024 10:00:00 +0000",
        b"Message-ID: <" + key.encode() + b"@hostile.example>",
        *fields,
    ]
    return CRLF.join(header) + CRLF + CRLF + body


def _mime(key: str, content_type: bytes, body: bytes, *fields: bytes) -> bytes:
    return _message(
        key,
        [
            b"Subject: " + key.encode(),
            b"MIME-Version: 1.0",
            b"Content-Type: " + content_type,
            *fields,
        ],
        body,
    )


def re_subject(count: int = 80_000) -> bytes:
    """A Subject of ``count`` "Re: " prefixes (320 KB): the review's worst, ~280 s of loop."""
    return _message("re_subject", [b"Subject: " + b"Re: " * count + b"hello"])


def mixed_prefix_subject(count: int = 40_000) -> bytes:
    """Prefixes of every form the subject normaliser knows, and list tags, alternating."""
    unit = b"Re: [list] Fwd: AW[2]: Re(3): "
    return _message("mixed_prefix_subject", [b"Subject: " + unit * (count // 5) + b"hello (fwd)"])


def many_parameters(count: int = 20_000) -> bytes:
    """A Content-Type of ``count`` parameters, one per folded line (20k: 14 s on Email/get)."""
    params = b"".join(b";\r\n\tp%d=v%d" % (n, n) for n in range(count))
    return _mime("many_parameters", b"text/plain; charset=utf-8" + params, b"Hello.\r\n")


def many_continuations(count: int = 20_000) -> bytes:
    """A filename split into ``count`` RFC 2231 continuations, in both Content-Type (name)
    and Content-Disposition (filename*, percent-encoded)."""
    name = b"".join(b";\r\n\tname*%d=n%d" % (n, n) for n in range(count))
    filename = b";\r\n\tfilename*0*=utf-8''%410" + b"".join(
        b";\r\n\tfilename*%d*=%%41%d" % (n, n) for n in range(1, count)
    )
    return _mime(
        "many_continuations",
        b"application/octet-stream" + name,
        b"AAAA\r\n",
        b"Content-Disposition: attachment" + filename,
        b"Content-Transfer-Encoding: base64",
    )


def many_parts(count: int = 5_000, key: str = "many_parts") -> bytes:
    """A multipart/mixed of ``count`` small text parts (5,000: ~5.5 s on Email/get)."""
    part = b"--b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\npart\r\n"
    return _mime(key, b'multipart/mixed; boundary="b"', part * count + b"--b--\r\n")


def upload_many_parts(count: int = 250_000) -> bytes:
    """A blob to upload for Email/parse: ``count`` empty parts (250k: 13.7 s)."""
    return _mime(
        "upload_many_parts", b"multipart/mixed; boundary=b", b"--b\r\n\r\n" * count + b"--b--\r\n"
    )


def deep_multiparts(depth: int = 2_000) -> bytes:
    """``depth`` multiparts each holding the next, with a text part at the bottom."""
    opening = b"".join(
        b"--%d\r\nContent-Type: multipart/mixed; boundary=%d\r\n\r\n" % (n, n + 1)
        for n in range(depth)
    )
    closing = b"".join(b"--%d--\r\n" % n for n in reversed(range(depth + 1)))
    bottom = b"--%d\r\nContent-Type: text/plain\r\n\r\nbottom\r\n" % depth
    return _mime("deep_multiparts", b"multipart/mixed; boundary=0", opening + bottom + closing)


def deep_messages(depth: int = 2_000) -> bytes:
    """``depth`` message/rfc822 parts each holding the next message."""
    inner = b"Subject: bottom\r\n\r\nbottom\r\n"
    header = b"Content-Type: message/rfc822\r\n\r\n" * depth
    return _mime("deep_messages", b"message/rfc822", header + inner)


def huge_references(count: int = 12_000) -> bytes:
    """A References field of ``count`` message ids, one per folded line (539 KB stored 4 MB
    in Redis for good)."""
    ids = b"\r\n ".join(b"<ref-%06d.0123456789abcdef@lists.example.net>" % n for n in range(count))
    return _message(
        "huge_references",
        [
            b"Subject: Re: hello",
            b"In-Reply-To: <ref-000000.0123456789abcdef@lists.example.net>",
            b"References: " + ids,
        ],
    )


def long_message_id(length: int = 500_000) -> bytes:
    """In-Reply-To naming one message id of ``length`` octets."""
    return _message(
        "long_message_id",
        [b"Subject: Re: hello", b"In-Reply-To: <" + b"x" * length + b"@example.net>"],
    )


def many_encoded_words(count: int = 50_000) -> bytes:
    """A Subject and a From display name of ``count`` RFC 2047 encoded words."""
    words = b"\r\n ".join(b"=?utf-8?q?w=C3=A9rd%d?=" % n for n in range(count))
    return _message(
        "many_encoded_words", [b"Subject: " + words, b"Reply-To: " + words + b" <r@example.net>"]
    )


def many_addresses(count: int = 100_000) -> bytes:
    """A To of ``count`` addresses in groups, with comments and quoted names."""
    items = b",\r\n ".join(
        b'"Name %d" (c) <user%d@example.net>' % (n, n)
        if n % 100
        else b"g%d: a%d@example.net;" % (n, n)
        for n in range(count)
    )
    return _message("many_addresses", [b"Subject: hello", b"Cc: " + items])


def nested_comments(depth: int = 200_000) -> bytes:
    """A From of ``depth`` nested comments and a Date inside an unclosed one."""
    return _message(
        "nested_comments",
        [
            b"Subject: hello",
            b"Reply-To: " + b"(" * depth + b"x" + b")" * depth + b" a@example.net",
            b"Sender: a@example.net " + b"(" * depth,
        ],
    )


def many_header_fields(count: int = 200_000) -> bytes:
    """``count`` header fields, a third of them Subject, a third folded twice."""
    fields = []
    for n in range(count):
        if n % 3 == 0:
            fields.append(b"Subject: Re: s%d" % n)
        elif n % 3 == 1:
            fields.append(b"X-F%d: a\r\n b\r\n\tc" % n)
        else:
            fields.append(b"Received: from h%d by mx; Mon, 01 Jul 2024 10:00:00 +0000" % n)
    return _message("many_header_fields", fields)


def dense_parts() -> bytes:
    """1,000 parts in 57 KB: under the 64 KiB gateway.offload keeps on the event loop, yet
    200 ms of parsing."""
    return many_parts(1_000, key="dense_parts")


def dense_header_fields(count: int = 3_500) -> bytes:
    """``count`` tiny header fields in under 64 KiB, each a Cc of one comma-separated group."""
    fields = [b"Cc: g%d: a@b, c@d;" % n if n % 2 else b"X-%d: ," % n for n in range(count)]
    return _message("dense_header_fields", fields)


def long_header_line(length: int = 4_000_000) -> bytes:
    """One header field of ``length`` octets on a single line, and a line that is no field."""
    return _message(
        "long_header_line",
        [b"Subject: " + b"a" * length, b"X" * length],
    )


def many_lines_field(count: int = 300_000) -> bytes:
    """A Subject folded over ``count`` lines, each a single white space."""
    return _message("many_lines_field", [b"Subject: s" + b"\r\n " * count + b"end"])


def huge_html(size: int = 8_000_000) -> bytes:
    """A text/html message of ``size`` octets of small elements, hidden ones and entities."""
    unit = b"<div><p>a&amp;b</p><script>x</script><br><span>t&#233;</span></div>\r\n"
    return _mime("huge_html", b"text/html; charset=utf-8", unit * (size // len(unit)))


def unlabelled_8bit(size: int = 8_000_000) -> bytes:
    """A text part of ``size`` octets of Latin-1 without a charset: the charset is guessed."""
    line = "Déjà vu à la café, naïve façade. Œuvre ü ß ø å.\r\n".encode("latin-1", "replace")
    return _mime(
        "unlabelled_8bit",
        b"text/plain",
        line * (size // len(line)),
        b"Content-Transfer-Encoding: 8bit",
    )


def qp_spaces(size: int = 4_000_000) -> bytes:
    """Quoted-printable with runs of spaces in the middle of lines (trailing-space stripping)."""
    line = b" " * 5_000 + b"x\r\n"
    return _mime(
        "qp_spaces",
        b"text/plain; charset=utf-8",
        line * (size // len(line)),
        b"Content-Transfer-Encoding: quoted-printable",
    )


def broken_base64(size: int = 8_000_000) -> bytes:
    """A base64 part of ``size`` octets with padding in every line (decoded run by run)."""
    line = b"QUJD=RE==\r\n"
    return _mime(
        "broken_base64",
        b"application/octet-stream",
        line * (size // len(line)),
        b"Content-Transfer-Encoding: base64",
    )


def near_boundaries(count: int = 400_000) -> bytes:
    """A multipart whose body has ``count`` lines starting like its boundary but none ending."""
    body = b"--bb-not-quite\r\n" * count + b"--bb\r\n\r\nlast\r\n--bb--\r\n"
    return _mime("near_boundaries", b"multipart/mixed; boundary=bb", body)


def long_parameter_value(length: int = 2_000_000) -> bytes:
    """One Content-Type parameter whose quoted value is ``length`` octets of quoted pairs."""
    return _mime(
        "long_parameter_value",
        b'text/plain; charset="' + b"\\a" * (length // 2) + b'"',
        b"Hello.\r\n",
        b"Content-Disposition: attachment; filename=" + b"=?utf-8?q?a?=" * (length // 13),
    )


# Every builder by its key, at the review's sizes; upload_many_parts is for Email/parse.
CORPUS: dict[str, Callable[[], bytes]] = {
    "re_subject": re_subject,
    "mixed_prefix_subject": mixed_prefix_subject,
    "many_parameters": many_parameters,
    "many_continuations": many_continuations,
    "many_parts": many_parts,
    "deep_multiparts": deep_multiparts,
    "deep_messages": deep_messages,
    "huge_references": huge_references,
    "long_message_id": long_message_id,
    "many_encoded_words": many_encoded_words,
    "many_addresses": many_addresses,
    "nested_comments": nested_comments,
    "many_header_fields": many_header_fields,
    "dense_parts": dense_parts,
    "dense_header_fields": dense_header_fields,
    "long_header_line": long_header_line,
    "many_lines_field": many_lines_field,
    "huge_html": huge_html,
    "unlabelled_8bit": unlabelled_8bit,
    "qp_spaces": qp_spaces,
    "broken_base64": broken_base64,
    "near_boundaries": near_boundaries,
    "long_parameter_value": long_parameter_value,
}

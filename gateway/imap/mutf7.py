"""Modified UTF-7 for mailbox names (RFC 3501 5.1.3).

Without UTF8=ACCEPT (RFC 6855) every non-ASCII mailbox name crosses the wire in this form.
Decoding is strict: a name that does not decode to exactly one text, and re-encode to the
same bytes, is rejected, because the gateway derives ids from names and must never merge two
distinct upstream names into one.
"""

from __future__ import annotations

import base64
import binascii
import re

# RFC 3501 5.1.3: octets 0x20-0x25 and 0x27-0x7e represent themselves; "&" is "&-".
_DIRECT = re.compile(r"[\x20-\x25\x27-\x7e]+")
# A shifted run: "&", modified BASE64 ("," instead of "/", no padding), "-".
_SHIFTED = re.compile(r"&([A-Za-z0-9+,]*)-")


def encode(name: str) -> str:
    """Encode a mailbox name; ValueError if it holds a lone surrogate (not real text)."""
    out: list[str] = []
    position = 0
    while position < len(name):
        direct = _DIRECT.match(name, position)
        if direct:
            out.append(direct.group())
            position = direct.end()
        elif name[position] == "&":
            out.append("&-")
            position += 1
        else:
            end = _DIRECT.search(name, position)
            stop = len(name) if end is None else end.start()
            stop = _before_ampersand(name, position, stop)
            out.append(_shift(name[position:stop]))
            position = stop
    return "".join(out)


def decode(encoded: str | bytes) -> str:
    """Decode a mailbox name; ValueError on anything RFC 3501 5.1.3 does not allow."""
    text = _as_ascii(encoded)
    out: list[str] = []
    position = 0
    previous_was_shift = False
    while position < len(text):
        char = text[position]
        if char != "&":
            if not "\x20" <= char <= "\x7e":
                raise ValueError("mailbox name holds a character outside printable ASCII")
            out.append(char)
            position += 1
            previous_was_shift = False
            continue
        shifted = _SHIFTED.match(text, position)
        if shifted is None:
            raise ValueError("unterminated or invalid modified BASE64 in mailbox name")
        if shifted.group(1) and previous_was_shift:
            # RFC 3501 5.1.3: null shifts ("-&" while in BASE64) are not permitted.
            raise ValueError("adjacent modified BASE64 runs in mailbox name")
        out.append(_unshift(shifted.group(1)) if shifted.group(1) else "&")
        previous_was_shift = bool(shifted.group(1))
        position = shifted.end()
    return "".join(out)


def _before_ampersand(name: str, start: int, stop: int) -> int:
    """End a shifted run at the first "&", which is always written as "&-"."""
    ampersand = name.find("&", start, stop)
    return stop if ampersand == -1 else ampersand


def _shift(chars: str) -> str:
    try:
        utf16 = chars.encode("utf-16-be")
    except UnicodeEncodeError as exc:
        raise ValueError("mailbox name is not valid Unicode text") from exc
    return "&" + _b64encode(utf16) + "-"


def _unshift(payload: str) -> str:
    try:
        utf16 = base64.b64decode(payload.replace(",", "/") + "=" * (-len(payload) % 4))
        decoded = utf16.decode("utf-16-be")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("invalid modified BASE64 in mailbox name") from exc
    # Re-encoding catches stray padding bits and odd lengths in one comparison.
    if _b64encode(utf16) != payload:
        raise ValueError("non-canonical modified BASE64 in mailbox name")
    if _DIRECT.search(decoded) or "&" in decoded:
        # RFC 3501 5.1.3: BASE64 MUST NOT represent a printing US-ASCII character.
        raise ValueError("modified BASE64 used for printable ASCII in mailbox name")
    return decoded


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=").replace("/", ",")


def _as_ascii(encoded: str | bytes) -> str:
    try:
        return encoded.decode("ascii") if isinstance(encoded, bytes) else encoded
    except UnicodeDecodeError as exc:
        raise ValueError("modified UTF-7 mailbox name is not 7-bit") from exc

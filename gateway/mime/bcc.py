"""The message as sent: the stored octets without their Bcc header fields.

RFC 8621 7.5: the server MUST remove any Bcc header field during delivery; every recipient
sees the message otherwise as the sender stored it (RFC 5322 3.6.3 leaves the Bcc recipients
out of what the others receive). The email package would re-serialise the whole header
section (refolding, re-encoding, normalising line ends), so the fields are cut from the
octets themselves: one pass over the header section, the body copied as it is.
"""

from __future__ import annotations

import re

# RFC 5322 3.6.3 "Bcc:" and 4.5.3's obsolete form with white space before the colon; the
# field name is case-insensitive (RFC 5322 1.2.2).
_BCC_FIELD = re.compile(rb"bcc[ \t]*:", re.IGNORECASE)
_EMPTY_LINES = (b"\n", b"\r\n")


def without_bcc(message: bytes) -> bytes:
    """``message`` with every Bcc field of its header section removed, folded lines and all.

    Lines end in CRLF or LF alone, both kept as they are. The header section ends at the
    first empty line (or with the message, when it has no body); a Bcc line in the body is
    text and stays. Nothing else changes: every octet outside the Bcc fields is copied.
    """
    kept: list[bytes] = []
    pos = start = 0
    dropping = False
    while pos < len(message):
        newline = message.find(b"\n", pos)
        end = len(message) if newline < 0 else newline + 1
        line = message[pos:end]
        if line in _EMPTY_LINES:
            break
        # RFC 5322 2.2.3: a line starting with white space continues the field before it.
        if not line.startswith((b" ", b"\t")):
            is_bcc = _BCC_FIELD.match(line) is not None
            if is_bcc and not dropping:
                kept.append(message[start:pos])
            elif dropping and not is_bcc:
                start = pos
            dropping = is_bcc
        pos = end
    if dropping:
        start = pos
    kept.append(message[start:])
    return b"".join(kept)

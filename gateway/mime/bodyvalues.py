"""EmailBodyValue objects and the preview (RFC 8621 4.1.4, 4.2), from one part's bytes.

Every function here needs only the :class:`BodyPart` (for its type, charset and transfer
encoding) and that part's own octets: ``message[part.body_start:part.body_end]`` today, or
an IMAP ``BODY.PEEK[<partId>]`` (still encoded: :func:`body_value`) or
``BINARY.PEEK[<partId>]`` (already decoded: :func:`decoded_body_value`) later.
"""

from __future__ import annotations

import codecs
import re
import sys
from html import unescape as unescape_html
from typing import Final, TypedDict

from charset_normalizer import CharsetMatch, from_bytes

from gateway.mime.bodyparts import BodyPart, decode_transfer, text_html_attachments
from gateway.mime.limits import CHARSET_SAMPLE_OCTETS, PIECE

# RFC 8621 4.1.4: "This MUST NOT be more than 256 characters in length."
PREVIEW_LENGTH: Final = 256
# Decoded octets of a part looked at for its preview: bounds the work on a huge HTML part.
PREVIEW_SOURCE_BYTES: Final = 256 * 1024

# Python codecs that are not character sets a message can declare: byte transforms and
# Python's own escapes. A charset parameter naming one is an unknown charset.
_NOT_CHARSETS: Final = frozenset(
    {
        "base64",
        "bz2",
        "charmap",
        "hex",
        "idna",
        "punycode",
        "quopri",
        "raw-unicode-escape",
        "rot-13",
        "undefined",
        "unicode-escape",
        "uu",
        "zlib",
    }
)
# Labels read as a superset, as browsers do (WHATWG Encoding Standard): text labelled with
# the subset often holds the superset's extra characters. US-ASCII is read as UTF-8, the
# encoding that 8-bit text without a charset most often turns out to be.
_SUPERSETS: Final = {
    "ascii": "utf-8",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
}
# Labels often wrong when the text does not decode: legacy 8-bit text sent as UTF-8 or with
# no charset at all. Other labels are trusted, and bad octets replaced.
_OFTEN_WRONG: Final = frozenset({"ascii", "utf-8"})
# When charset-normalizer ranks several charsets equal, the ones mail most often holds.
_GUESS_PREFERENCE: Final = ("utf_8", "cp1252")
_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# Invisible characters that bulk mail pads its hidden preheader with; dropped from previews.
_INVISIBLE: Final = str.maketrans(dict.fromkeys("\u00ad\u034f\u200b\u200c\u2060\ufeff"))
# HTML elements whose text a reader never sees.
_HIDDEN_ELEMENTS: Final = frozenset({"script", "style", "template", "title"})
# HTML elements that separate words: "<p>a</p><p>b</p>" reads "a b", not "ab".
_BLOCK_ELEMENTS: Final = frozenset(
    {
        *("address", "article", "aside", "blockquote", "br", "center", "dd", "div", "dl", "dt"),
        *("figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header"),
        *("hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "td"),
        *("tfoot", "th", "thead", "tr", "ul"),
    }
)


class EmailBodyValue(TypedDict):
    """RFC 8621 4.1.4 EmailBodyValue, ready for JSON."""

    value: str
    isEncodingProblem: bool
    isTruncated: bool


def body_values(
    message: bytes,
    root: BodyPart,
    *,
    fetch_text: bool,
    fetch_html: bool,
    fetch_all: bool,
    max_bytes: int | None,
) -> dict[str, EmailBodyValue]:
    """bodyValues, keyed by partId, of the text/* parts RFC 8621 4.2 selects.

    fetch_text takes those in textBody, fetch_html those in htmlBody, fetch_all all of those
    in bodyStructure (which does not enter attached messages).
    """
    wanted: set[str | None] = set()
    if fetch_text or fetch_html:
        text, html, _ = text_html_attachments(root)
        wanted.update(part.part_id for part in (text if fetch_text else []))
        wanted.update(part.part_id for part in (html if fetch_html else []))
    return {
        part.part_id: body_value(part, _body(message, part), max_bytes=max_bytes)
        for part in root.walk()
        if part.part_id is not None
        and part.type.startswith("text/")
        and (fetch_all or part.part_id in wanted)
    }


def body_value(part: BodyPart, body: bytes, *, max_bytes: int | None) -> EmailBodyValue:
    """The value of a part from its body octets as they are in the message (still encoded)."""
    decoded = decode_transfer(body, part.transfer_encoding)
    return decoded_body_value(
        part, decoded.content, max_bytes=max_bytes, transfer_problem=decoded.problem
    )


def part_text(part: BodyPart, body: bytes) -> tuple[str, bool]:
    """A whole part's text (CRLF as LF) and whether decoding it met a problem: what a
    cache keeps, to make values of any length from later."""
    decoded = decode_transfer(body, part.transfer_encoding)
    text, problem = decode_charset(decoded.content, part.charset)
    return text.replace("\r\n", "\n"), decoded.problem or problem


def text_value(
    part: BodyPart, text: str, problem: bool, *, max_bytes: int | None
) -> EmailBodyValue:
    """The value from a whole part's text (see :func:`part_text`)."""
    value, truncated = truncate(text, max_bytes, html=part.type == "text/html")
    return {"value": value, "isEncodingProblem": problem, "isTruncated": truncated}


def decoded_body_value(
    part: BodyPart, content: bytes, *, max_bytes: int | None, transfer_problem: bool = False
) -> EmailBodyValue:
    """The value of a part from octets whose transfer encoding is already undone.

    RFC 8621 4.1.4: charset decoded, CRLF replaced by LF; text/html stays HTML. RFC 8621 4.2:
    ``max_bytes`` of 0 or None means no truncation.
    """
    text, charset_problem = decode_charset(content, part.charset)
    value, truncated = truncate(
        text.replace("\r\n", "\n"), max_bytes, html=part.type == "text/html"
    )
    return {
        "value": value,
        "isEncodingProblem": transfer_problem or charset_problem,
        "isTruncated": truncated,
    }


def prefix_body_value(part: BodyPart, prefix: bytes, *, max_bytes: int) -> EmailBodyValue | None:
    """The value of a part from only its first encoded octets (a partial IMAP fetch).

    The cut falls anywhere: inside a base64 quantum, a quoted-printable escape or a
    character. Only whole lines are transfer-decoded and an incomplete character at the end
    is left out, so the cut itself is never reported as an encoding problem. None when the
    prefix holds less than ``max_bytes`` of text: the caller needs to fetch more.
    """
    text, problem = decode_prefix(prefix, part.transfer_encoding, part.charset)
    value, truncated = truncate(
        text.replace("\r\n", "\n"), max_bytes, html=part.type == "text/html"
    )
    if not truncated:
        return None
    return {"value": value, "isEncodingProblem": problem, "isTruncated": True}


def decode_prefix(prefix: bytes, encoding: str, charset: str | None) -> tuple[str, bool]:
    """Text from the first octets of a part, cut anywhere, and whether it is damaged.

    Only whole lines are transfer-decoded and a character cut at the end is left out, so
    the cut itself is no encoding problem.
    """
    whole_lines = prefix[: prefix.rfind(b"\n") + 1] or prefix
    decoded = decode_transfer(whole_lines, encoding)
    content = decoded.content
    # A character cut at the end: at most 3 octets of it (UTF-32 units are 4).
    for drop in range(min(4, len(content))):
        text, problem = decode_charset(content[: len(content) - drop], charset)
        if not problem:
            return text, decoded.problem
    text, problem = decode_charset(content, charset)
    return text, decoded.problem or problem


def _body(message: bytes, part: BodyPart) -> bytes:
    return message[part.body_start : part.body_end]


# -- Charsets -----------------------------------------------------------------------------------


def decode_charset(content: bytes, charset: str | None) -> tuple[str, bool]:
    """Text from octets in a declared charset, and whether that went wrong.

    RFC 8621 4.1.4: an unknown charset or malformed octets is an encoding problem; the
    server MAY use heuristics when the charset is unknown, absent or believed wrong, and
    SHOULD otherwise insert U+FFFD and continue.
    """
    codec = _codec(charset or "us-ascii")
    if codec is not None:
        for candidate in dict.fromkeys((_SUPERSETS.get(codec, codec), codec)):
            text = _strict(content, candidate)
            if text is not None:
                return _without_surrogates(text), False
        if codec not in _OFTEN_WRONG:
            return _without_surrogates(_decode(content, codec, "replace")), True
    return _without_surrogates(_best_effort(content)), True


def _codec(charset: str) -> str | None:
    """The Python codec for a MIME charset name (case-insensitive, RFC 2046 4.1.2), or None."""
    try:
        name = codecs.lookup(charset.strip().strip("\"'").lower()).name
    except (LookupError, ValueError):
        return None
    return None if name in _NOT_CHARSETS else name


def _strict(content: bytes, codec: str) -> str | None:
    try:
        return _decode(content, codec, "strict")
    except UnicodeDecodeError:
        return None


def _best_effort(content: bytes) -> str:
    """Text whose label is missing, unknown or wrong.

    UTF-8 with a few bad octets is much likelier than legacy text that happens to hold UTF-8
    sequences, so such text stays UTF-8 with U+FFFD; anything else is guessed. Both are
    told apart on the sample the guess would be made on.
    """
    text = _strict(content, "utf-8")
    if text is not None:
        return text
    if _UTF8_MULTIBYTE.search(content, 0, CHARSET_SAMPLE_OCTETS) is None:
        guessed = _guess(content)
        if guessed is not None:
            return guessed
    return _decode(content, "utf-8", "replace")


def _guess(content: bytes) -> str | None:
    """charset-normalizer's guess; among equally ranked charsets, a common one for mail.

    The guess is made on the first CHARSET_SAMPLE_OCTETS (whole lines where there are some),
    then the whole content is decoded with it: what the sample says holds for the rest of a
    part, and guessing on megabytes costs a second.
    """
    sample = content[:CHARSET_SAMPLE_OCTETS]
    if len(content) > len(sample):
        sample = sample[: sample.rfind(b"\n") + 1] or sample
    matches = from_bytes(sample)
    best = matches.best()
    if best is None:
        return None
    tied = [match for match in matches if _rank(match) == _rank(best)]
    return _decode(content, min(tied, key=_preference).encoding, "replace")


def _rank(match: CharsetMatch) -> tuple[float, float]:
    return match.chaos, match.coherence


def _preference(match: CharsetMatch) -> int:
    """Position in _GUESS_PREFERENCE of a match or of a charset reading the text alike.

    charset-normalizer reports one match per distinct text, so cp1252 text may come as
    cp1250 with cp1252 among ``could_be_from_charset``.
    """
    alike = {match.encoding, *match.could_be_from_charset}
    ranks = [rank for rank, encoding in enumerate(_GUESS_PREFERENCE) if encoding in alike]
    return min(ranks, default=len(_GUESS_PREFERENCE))


def _without_surrogates(text: str) -> str:
    """Some decoders (UTF-7, UTF-16) can yield lone surrogates, which JSON cannot carry."""
    return "".join(
        _LONE_SURROGATE.sub("\ufffd", text[start : start + PIECE])
        for start in range(0, len(text), PIECE)
    )


def _decode(content: bytes, codec: str, errors: str) -> str:
    """``content.decode(codec, errors)``, a PIECE of octets per call (see PIECE)."""
    if len(content) <= PIECE:
        return content.decode(codec, errors)
    try:
        decoder = codecs.getincrementaldecoder(codec)(errors)
    except LookupError:
        return content.decode(codec, errors)
    pieces = [decoder.decode(content[at : at + PIECE]) for at in range(0, len(content), PIECE)]
    pieces.append(decoder.decode(b"", final=True))
    return "".join(pieces)


# -- Truncation (RFC 8621 4.2 maxBodyValueBytes) ------------------------------------------------


def truncate(value: str, max_bytes: int | None, *, html: bool) -> tuple[str, bool]:
    """At most ``max_bytes`` octets of UTF-8, and whether anything was cut.

    RFC 8621 4.2: the result MUST be valid UTF-8 not cut mid-codepoint, and text/html
    SHOULD NOT be cut inside a tag.
    """
    if not max_bytes:
        return value, False
    encoded = value.encode("utf-8")
    if len(encoded) <= max_bytes:
        return value, False
    cut = max_bytes
    while cut > 0 and encoded[cut] & 0xC0 == 0x80:  # a continuation octet starts no codepoint
        cut -= 1
    text = encoded[:cut].decode("utf-8")
    return (_before_open_tag(text) if html else text), True


def _before_open_tag(text: str) -> str:
    """Drop a tag left open at the end: "<p>Hi <a hre" becomes "<p>Hi "."""
    opening = text.rfind("<")
    return text[:opening] if opening > text.rfind(">") else text


# -- Preview (RFC 8621 4.1.4) -------------------------------------------------------------------


def preview(message: bytes, root: BodyPart) -> str:
    """The preview: the first text part of textBody that has any text, as plain text.

    Of a long part only the encoded octets that can hold PREVIEW_SOURCE_BYTES of text are
    decoded (four per octet of text covers base64, quoted-printable and UTF-16).
    """
    for part in preview_parts(root):
        is_html = part.type == "text/html"
        body = _body(message, part)
        window = 4 * PREVIEW_SOURCE_BYTES
        if len(body) > window:
            decoded, _ = decode_prefix(body[:window], part.transfer_encoding, part.charset)
            value, _ = truncate(decoded.replace("\r\n", "\n"), PREVIEW_SOURCE_BYTES, html=is_html)
        else:
            value = body_value(part, body, max_bytes=PREVIEW_SOURCE_BYTES)["value"]
        text = preview_text(value, html=is_html)
        if text:
            return text
    return ""


def preview_parts(root: BodyPart) -> list[BodyPart]:
    """The parts a preview may come from, in order: text/plain or text/html in textBody.

    textBody prefers plain text but holds the HTML of an HTML-only message.
    """
    text, _, _ = text_html_attachments(root)
    return [part for part in text if part.type in ("text/plain", "text/html")]


def preview_text(value: str, *, html: bool) -> str:
    """At most PREVIEW_LENGTH characters of a body value, white space collapsed."""
    plain = html_to_text(value) if html else value
    return " ".join(plain.translate(_INVISIBLE).split())[:PREVIEW_LENGTH].rstrip()


def html_to_text(html: str) -> str:
    """The text a reader of the HTML sees, with its white space not yet collapsed.

    Not the stdlib's HTMLParser: on some unfinished markup (a run of "<a " without ">") it
    takes minutes for a few kilobytes, and a huge numeric character reference makes it raise.
    The tokens below follow the WHATWG tokenizer closely enough for text: every one runs to
    its end or to the end of the input, so each character is looked at once.
    """
    chunks: list[str] = []
    hidden = 0
    pos = 0
    while (token := _HTML_TOKEN.search(html, pos)) is not None:
        if not hidden:
            chunks.append(_unescape(html[pos : token.start()]))
        pos = token.end()
        name = (token["tag"] or "").lower()
        if name in _RAW_TEXT_ELEMENTS and not token["end"]:
            # Its content is not markup: skip to its end tag (hidden, so nothing is lost).
            closing = _raw_text_end(name).search(html, pos)
            pos = len(html) if closing is None else closing.start()
        if name in _HIDDEN_ELEMENTS:
            hidden = max(0, hidden + (-1 if token["end"] else 1))
        elif name in _BLOCK_ELEMENTS:
            chunks.append(" ")
    if not hidden:
        chunks.append(_unescape(html[pos:]))
    return "".join(chunks)


# Markup: a comment, a start or end tag (quoted attribute values may hold ">"), or another
# markup declaration ("<!DOCTYPE", "<?xml", "<![CDATA[", a bogus "</1"). A "<" that starts
# none of them is text. Possessive quantifiers: a tag running to the end of a long input
# keeps no backtracking points, which made the match itself grow faster than the input.
_HTML_TOKEN: Final = re.compile(
    r"""
      <!--.*?(?:-->|\Z)
    | <(?P<end>/)?(?P<tag>[A-Za-z][^\t\n\f\r />]*+)
      (?:[^>"']++|"[^"]*+(?:"|\Z)|'[^']*+(?:'|\Z))*+(?:>|\Z)
    | <[!?/][^>]*+(?:>|\Z)
    """,
    re.DOTALL | re.VERBOSE,
)
# Elements whose content is text up to their end tag, never markup (WHATWG raw text).
_RAW_TEXT_ELEMENTS: Final = frozenset({"script", "style"})
# A numeric character reference with more digits than any code point needs: html.unescape
# would hand all of them to int(), which refuses more than 4,300 decimal digits (ValueError).
_LONG_CHARREF: Final = re.compile(r"&#(?:([xX])([0-9a-fA-F]{8,})|([0-9]{8,}));?")


def _raw_text_end(name: str) -> re.Pattern[str]:
    return re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE)


def _unescape(text: str) -> str:
    """Character references decoded as HTMLParser does (html.unescape), long ones made short
    first: beyond U+10FFFF a reference is U+FFFD whatever its digits."""
    if "&" not in text:
        return text
    return unescape_html(_LONG_CHARREF.sub(_short_charref, text))


def _short_charref(match: re.Match[str]) -> str:
    digits = (match[2] or match[3]).lstrip("0") or "0"
    base = 16 if match[1] else 10
    value = int(digits, base) if len(digits) <= 8 else sys.maxunicode + 1
    return f"&#{value};"

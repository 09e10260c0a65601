"""bodyValues, truncation and preview, with the stdlib's decoding as oracle for good mail."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from gateway.mime.bodyparts import BodyPart, body_structure, decode_transfer
from gateway.mime.bodyvalues import (
    PREVIEW_LENGTH,
    EmailBodyValue,
    body_value,
    body_values,
    decode_charset,
    decoded_body_value,
    html_to_text,
    preview,
    preview_text,
    truncate,
)

FRENCH = "Le café était très chaud et la crème brûlée délicieuse, à déguster près de la fenêtre.\n"
RUSSIAN = (
    "Привет! Это тестовое сообщение на русском языке. Мы проверяем, как работает "
    "определение кодировки для писем без указанной кодировки. Спасибо за внимание.\n"
)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def only_part(charset: str, body: bytes, *, encoding: str = "8bit", kind: str = "plain") -> bytes:
    return (
        f"Content-Type: text/{kind}; charset={charset}\r\n"
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    ).encode() + body


def value_of(raw: bytes, max_bytes: int | None = None) -> EmailBodyValue:
    root = body_structure(raw)
    values = body_values(
        raw, root, fetch_text=True, fetch_html=False, fetch_all=False, max_bytes=max_bytes
    )
    return values["1"]


def clean(value: str) -> EmailBodyValue:
    return {"value": value, "isEncodingProblem": False, "isTruncated": False}


def problem(value: str) -> EmailBodyValue:
    return {"value": value, "isEncodingProblem": True, "isTruncated": False}


# -- Agreement with the stdlib ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "charset", "cte"),
    [
        ("Grüße aus München\nZweite Zeile\n", "utf-8", "quoted-printable"),
        ("Grüße aus München\nZweite Zeile\n", "utf-8", "base64"),
        ("Grüße aus München\nZweite Zeile\n", "utf-8", "8bit"),
        (FRENCH, "iso-8859-1", "quoted-printable"),
        (RUSSIAN, "koi8-r", "base64"),
        ("日本語のテキストです。\n", "iso-2022-jp", "7bit"),
        ("日本語のテキストです。\n", "shift_jis", "base64"),
        ("plain ascii\n", "us-ascii", "7bit"),
    ],
)
def test_values_match_stdlib_decoding(text: str, charset: str, cte: str) -> None:
    message = EmailMessage()
    message.set_content(text, charset=charset, cte=cte)
    raw = message.as_bytes(policy=policy.SMTP)
    stdlib = message_from_bytes(raw, policy=policy.default).get_content()
    assert isinstance(stdlib, str)
    # RFC 8621 4.1.4: CRLF becomes LF.
    assert value_of(raw) == clean(stdlib.replace("\r\n", "\n"))
    assert value_of(raw) == clean(text)


def test_html_value_is_the_html_itself() -> None:
    raw = only_part("utf-8", crlf("<p>Caf\u00e9 &amp; <b>cr\u00e8me</b></p>\n"), kind="html")
    root = body_structure(raw)
    values = body_values(raw, root, fetch_text=False, fetch_html=True, fetch_all=False, max_bytes=0)
    assert values == {"1": clean("<p>Café &amp; <b>crème</b></p>\n")}


def test_only_crlf_becomes_lf() -> None:
    assert value_of(only_part("utf-8", b"a\r\nb\rc\nd\r\n")) == clean("a\nb\rc\nd\n")


# -- Which parts (RFC 8621 4.2) ----------------------------------------------------------------


def selection_message() -> tuple[bytes, BodyPart]:
    message = EmailMessage()
    message.set_content("text body\n")
    message.add_alternative("<p>html body</p>\n", subtype="html")
    message.add_attachment("a,b\n", subtype="csv", filename="t.csv")
    message.add_attachment(b"\x00\x01", maintype="application", subtype="octet-stream")
    raw = message.as_bytes(policy=policy.SMTP)
    return raw, body_structure(raw)


@pytest.mark.parametrize(
    ("flags", "part_ids"),
    [
        ((False, False, False), []),
        ((True, False, False), ["1.1"]),
        ((False, True, False), ["1.2"]),
        ((True, True, False), ["1.1", "1.2"]),
        ((False, False, True), ["1.1", "1.2", "2"]),
    ],
)
def test_fetch_flags_choose_parts(flags: tuple[bool, bool, bool], part_ids: list[str]) -> None:
    raw, root = selection_message()
    fetch_text, fetch_html, fetch_all = flags
    values = body_values(
        raw, root, fetch_text=fetch_text, fetch_html=fetch_html, fetch_all=fetch_all, max_bytes=None
    )
    assert list(values) == part_ids


def test_fetch_all_includes_text_attachments_with_their_values() -> None:
    raw, root = selection_message()
    values = body_values(
        raw, root, fetch_text=False, fetch_html=False, fetch_all=True, max_bytes=None
    )
    assert values == {
        "1.1": clean("text body\n"),
        "1.2": clean("<p>html body</p>\n"),
        "2": clean("a,b\n"),
    }


def test_attached_message_text_is_not_a_body_value() -> None:
    inner = EmailMessage()
    inner.set_content("inner text\n")
    outer = EmailMessage()
    outer.set_content("outer text\n")
    outer.add_attachment(inner)
    raw = outer.as_bytes(policy=policy.SMTP)
    values = body_values(
        raw, body_structure(raw), fetch_text=True, fetch_html=True, fetch_all=True, max_bytes=None
    )
    assert values == {"1": clean("outer text\n")}


# -- Charsets and encoding problems ----------------------------------------------------------


def test_latin1_labelled_utf8_is_guessed() -> None:
    raw = only_part("utf-8", FRENCH.encode("latin-1"))
    assert value_of(raw) == problem(FRENCH)


def test_unknown_charset_is_a_problem_even_when_guessed() -> None:
    assert value_of(only_part("x-unknown", RUSSIAN.encode("koi8-r"))) == problem(RUSSIAN)
    assert value_of(only_part("x-unknown", "Grüße\n".encode())) == problem("Grüße\n")


def test_python_only_codec_names_are_unknown_charsets() -> None:
    assert value_of(only_part("unicode-escape", b"a\\u0041")) == problem("a\\u0041")


def test_utf8_with_a_stray_octet_keeps_utf8_and_marks_it() -> None:
    body = "naïve café ".encode() + b"\xe9\n"
    assert value_of(only_part("utf-8", body)) == problem("naïve café \ufffd\n")


def test_undeclared_utf8_is_read_as_utf8() -> None:
    raw = b"Content-Type: text/plain\r\n\r\n" + "Grüße\r\n".encode()
    assert value_of(raw) == clean("Grüße\n")


def test_labels_are_read_as_their_supersets() -> None:
    # iso-8859-1 mail from Windows holds cp1252's euro sign at 0x80.
    assert value_of(only_part("ISO-8859-1", b"\x80 5")) == clean("€ 5")


def test_bad_octets_in_a_trusted_charset_are_replaced() -> None:
    # RFC 8621 4.1.4: insert U+FFFD and continue.
    assert decode_charset(b"ok \xa4\xa2 \xff", "EUC-JP") == ("ok \u3042 \ufffd", True)


def test_broken_base64_is_a_problem_with_what_could_be_read() -> None:
    raw = only_part("utf-8", b"R3LDvMOfZQ==!!\r\n", encoding="base64")
    assert value_of(raw) == problem("Grüße")


def test_unknown_transfer_encoding_is_read_as_none() -> None:
    raw = only_part("utf-8", b"plain text", encoding="x-compressed")
    assert value_of(raw) == problem("plain text")


def test_decoded_body_value_takes_binary_fetched_octets() -> None:
    raw = only_part("utf-8", b"R3LDvMOfZQ==", encoding="base64")
    part = body_structure(raw)
    content = decode_transfer(raw[part.body_start : part.body_end], part.transfer_encoding).content
    expected = clean("Grüße")
    assert decoded_body_value(part, content, max_bytes=None) == expected
    assert body_value(part, raw[part.body_start : part.body_end], max_bytes=None) == expected


# -- Truncation (RFC 8621 4.2 maxBodyValueBytes) -------------------------------------------


@pytest.mark.parametrize(
    ("value", "max_bytes", "expected"),
    [
        ("café", 4, ("caf", True)),  # "é" is octets 4 and 5
        ("café", 5, ("café", False)),
        ("a😀b", 2, ("a", True)),  # the emoji is octets 2 to 5
        ("a😀b", 4, ("a", True)),
        ("a😀b", 5, ("a😀", True)),
        ("abc", 0, ("abc", False)),
        ("abc", None, ("abc", False)),
    ],
)
def test_truncation_never_splits_a_codepoint(
    value: str, max_bytes: int | None, expected: tuple[str, bool]
) -> None:
    assert truncate(value, max_bytes, html=False) == expected


def test_truncation_counts_octets_of_the_normalised_value() -> None:
    raw = only_part("utf-8", "ab\r\ncé\r\n".encode())
    assert value_of(raw, max_bytes=5) == {
        "value": "ab\nc",
        "isEncodingProblem": False,
        "isTruncated": True,
    }


def test_html_is_not_cut_inside_a_tag() -> None:
    html = '<p>Hello <a href="https://example.com">there</a></p>'
    assert truncate(html, 20, html=True) == ("<p>Hello ", True)
    assert truncate(html, 20, html=False) == ('<p>Hello <a href="ht', True)
    assert truncate(html, 42, html=True) == ('<p>Hello <a href="https://example.com">the', True)


# -- Preview (RFC 8621 4.1.4) ----------------------------------------------------------------


def test_preview_of_html_only_message() -> None:
    html = (
        "<html><head><title>Newsletter</title><style>p {color: red}</style></head>"
        "<body><script>var x = '<p>hidden</p>';</script>"
        "<span style='display:none'>&zwnj;&nbsp;&#847; &zwnj;</span>"
        "<h1>Caf&eacute;&nbsp;news</h1><p>Fish &amp; chips<br>on Friday</p>"
        "<table><tr><td>one</td><td>two</td></tr></table></body></html>"
    )
    message = EmailMessage()
    message.set_content(html, subtype="html")
    raw = message.as_bytes(policy=policy.SMTP)
    assert preview(raw, body_structure(raw)) == "Café news Fish & chips on Friday one two"


def test_preview_prefers_the_text_alternative() -> None:
    message = EmailMessage()
    message.set_content("  Plain\n\n\tversion  \n")
    message.add_alternative("<p>HTML version</p>", subtype="html")
    raw = message.as_bytes(policy=policy.SMTP)
    assert preview(raw, body_structure(raw)) == "Plain version"


def test_preview_skips_empty_parts_and_is_at_most_256_characters() -> None:
    body = " ".join(f"word{n}" for n in range(200))
    raw = crlf(
        f"""Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain


--b
Content-Type: text/plain

{body}
--b--
"""
    )
    result = preview(raw, body_structure(raw))
    assert result == body[:PREVIEW_LENGTH].rstrip()
    assert len(result) <= PREVIEW_LENGTH


def test_preview_without_text_is_empty() -> None:
    raw = b"Content-Type: image/png\r\n\r\n\x89PNG"
    assert preview(raw, body_structure(raw)) == ""


def test_preview_text_cuts_at_256_characters_after_collapsing() -> None:
    assert preview_text("é " * 300, html=False) == " ".join(["é"] * 128)


def test_html_to_text_keeps_inline_words_together() -> None:
    assert html_to_text("<p>un<b>break</b>able</p><div>next</div>") == " unbreakable  next "

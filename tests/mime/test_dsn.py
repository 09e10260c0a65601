"""Delivery reports read back (gateway.mime.dsn), on real Postfix reports and RFC 3464's shapes.

The files in ``dsn/`` are what Postfix 3.7.11 delivered (through Dovecot's LMTP) to the
sender's INBOX on 2026-12-07, after a submission with ``RET=HDRS`` or ``RET=FULL``,
``ENVID=...`` (one without) and ``NOTIFY=SUCCESS,FAILURE`` to ``bob@example.com`` (a user,
"relayed" into LMTP) and ``nobody@example.com`` (no such user: bounced with 5.1.1). The
stdlib's own reading of the same reports (``email`` with policy.default parses
message/delivery-status into blocks) is the reference the parser is compared with.
"""

from __future__ import annotations

import random
import time
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path

import pytest

from gateway.mime.dsn import (
    MAX_RECIPIENTS,
    REPORT_OCTETS,
    DeliveryReport,
    RecipientReport,
    parse_report,
)

SAMPLES = Path(__file__).parent / "dsn"


def sample(name: str, *, crlf: bool = False) -> bytes:
    data = (SAMPLES / name).read_bytes()
    return data.replace(b"\n", b"\r\n") if crlf else data


def block(recipient: str, action: str = "failed", status: str = "5.1.1") -> str:
    return f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n\r\n"


def report(*, status: str, extra: str = "", envid: str = "E-1") -> bytes:
    """A report in RFC 3464's layout with the delivery-status part ``status``."""
    return (
        "From: MAILER-DAEMON@mx.example.net\r\n"
        "To: alice@example.com\r\n"
        "Subject: report\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="RPT"\r\n'
        "\r\n"
        "--RPT\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "Something happened to your message.\r\n"
        "\r\n"
        "--RPT\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n"
        f"Original-Envelope-Id: {envid}\r\n"
        "\r\n"
        f"{status}"
        "--RPT\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        "From: alice@example.com\r\n"
        "Message-ID: <sent.1@example.com>\r\n"
        "\r\n"
        f"{extra}"
        "--RPT--\r\n"
    ).encode()


@pytest.mark.parametrize("crlf", [False, True])
def test_postfix_relayed_report(crlf: bool) -> None:
    parsed = parse_report(sample("postfix-relayed.eml", crlf=crlf))
    assert parsed == DeliveryReport(
        envid="Sub-abc123",
        message_id="m1.abc@example.com",
        recipients=(
            RecipientReport(
                final_recipient="bob@example.com",
                original_recipient="bob@example.com",
                action="relayed",
                status="2.0.0",
                diagnostic="smtp; 250 2.0.0 <bob@example.com> c6syDPB1FmtFBQAAg+zDdQ Saved",
            ),
        ),
    )
    assert (
        parsed.recipients[0].smtp_reply
        == "250 2.0.0 <bob@example.com> c6syDPB1FmtFBQAAg+zDdQ Saved"
    )


@pytest.mark.parametrize("crlf", [False, True])
def test_postfix_bounce_returning_the_whole_message(crlf: bool) -> None:
    parsed = parse_report(sample("postfix-failed-returned-full.eml", crlf=crlf))
    assert parsed is not None
    assert (parsed.envid, parsed.message_id) == ("Sub-def456", "m2.def@example.com")
    (nobody,) = parsed.recipients
    assert (nobody.final_recipient, nobody.action, nobody.status) == (
        "nobody@example.com",
        "failed",
        "5.1.1",
    )
    # The folded Diagnostic-Code comes back on one line.
    assert nobody.smtp_reply == (
        "550 5.1.1 <nobody@example.com> User doesn't exist: nobody@example.com"
    )


def test_postfix_bounce_without_envid_still_names_the_returned_message() -> None:
    parsed = parse_report(sample("postfix-failed-without-envid.eml"))
    assert parsed is not None
    assert (parsed.envid, parsed.message_id) == (None, "m4.noenvid@example.com")
    assert [r.action for r in parsed.recipients] == ["failed"]


def test_one_transaction_two_reports() -> None:
    """Postfix reports a transaction's successes and failures in separate messages, each
    naming only its own recipients."""
    relayed = parse_report(sample("postfix-two-recipients-relayed.eml"))
    failed = parse_report(sample("postfix-two-recipients-failed.eml"))
    assert relayed is not None and failed is not None
    assert relayed.envid == failed.envid == "Sub-mix789"
    assert relayed.message_id == failed.message_id == "m3.mix@example.com"
    assert [(r.final_recipient, r.action) for r in relayed.recipients] == [
        ("bob@example.com", "relayed")
    ]
    assert [(r.final_recipient, r.action) for r in failed.recipients] == [
        ("nobody@example.com", "failed")
    ]


def _stdlib_blocks(message: Message) -> list[dict[str, str]]:
    for part in message.walk():
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            assert isinstance(payload, list)
            return [
                {name.lower(): " ".join(value.split()) for name, value in block.raw_items()}
                for block in payload
            ]
    raise AssertionError("no delivery-status part")


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("*.eml")))
def test_agrees_with_the_stdlib(name: str) -> None:
    data = sample(name)
    message = message_from_bytes(data, policy=policy.default)
    per_message, *per_recipient = _stdlib_blocks(message)
    parsed = parse_report(data)
    assert parsed is not None
    assert parsed.envid == per_message.get("original-envelope-id")
    assert [
        (
            f"rfc822; {r.final_recipient}",
            r.action,
            r.status,
            r.diagnostic,
        )
        for r in parsed.recipients
    ] == [
        (b["final-recipient"], b["action"], b["status"], b.get("diagnostic-code"))
        for b in per_recipient
    ]
    returned = [
        p
        for p in message.walk()
        if p.get_content_type() in ("message/rfc822", "text/rfc822-headers")
    ]
    assert len(returned) == 1
    part = returned[0]
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()[0]
    else:
        inner = message_from_bytes(part.get_payload().encode(), policy=policy.default)
    assert f"<{parsed.message_id}>" == inner["Message-ID"]


def test_several_recipients_in_the_rfc_3464_layout() -> None:
    """RFC 3464's multi-recipient example's shape: a failure, a delay with its retry date, a
    delivery; types and keywords in any case, comments after the status."""
    parsed = parse_report(
        report(
            status=(
                "Original-Recipient: rfc822;carol@example.org\r\n"
                "Final-Recipient: RFC822; <carol@example.org>\r\n"
                "Action: Failed\r\n"
                "Status: 5.0.0 (permanent failure)\r\n"
                "Diagnostic-Code: smtp; 550 5.0.0 'carol@example.org' is not a registered user\r\n"
                "Last-Attempt-Date: Thu, 7 Jul 1994 17:15:49 -0400\r\n"
                "\r\n"
                "Final-Recipient: rfc822; dave@example.org\r\n"
                "Action: delayed\r\n"
                "Status: 4.0.0\r\n"
                "Will-Retry-Until: Fri, 8 Jul 1994 09:21:47 -0400\r\n"
                "\r\n"
                "Final-Recipient: rfc822;erin@example.org\r\n"
                "Action: delivered\r\n"
                "Status: 2.1.5\r\n"
                "\r\n"
            )
        )
    )
    assert parsed is not None
    assert [
        (r.final_recipient, r.original_recipient, r.action, r.status) for r in parsed.recipients
    ] == [
        ("carol@example.org", "carol@example.org", "failed", "5.0.0"),
        ("dave@example.org", None, "delayed", "4.0.0"),
        ("erin@example.org", None, "delivered", "2.1.5"),
    ]
    assert [r.smtp_reply for r in parsed.recipients] == [
        "550 5.0.0 'carol@example.org' is not a registered user",
        "451 4.0.0",
        "250 2.1.5",
    ]
    assert parsed.message_id == "sent.1@example.com"


def test_a_diagnostic_that_is_no_smtp_reply() -> None:
    """RFC 3464's gateway example reports an X-Unix exit code: the reply shown is built from
    the status, the diagnostic's text kept after it."""
    parsed = parse_report(
        report(
            status=(
                "Final-Recipient: rfc822; frank@example.org\r\n"
                "Action: failed\r\n"
                "Status: 5.0.0\r\n"
                "Diagnostic-Code: X-Unix; 255\r\n"
                "\r\n"
            )
        )
    )
    assert parsed is not None
    assert parsed.recipients[0].smtp_reply == "550 5.0.0 255"


def test_a_base64_encoded_report_part() -> None:
    import base64

    fields = (
        b"Original-Envelope-Id: B64\r\n\r\n"
        b"Final-Recipient: rfc822; bob@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    )
    data = (
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(fields)
        + b"--b--\r\n"
    )
    parsed = parse_report(data)
    assert parsed is not None
    assert parsed.envid == "B64"
    assert parsed.message_id is None
    assert [r.final_recipient for r in parsed.recipients] == ["bob@example.com"]


def test_a_global_report_with_utf8_addresses() -> None:
    """RFC 6533: message/global-delivery-status, addresses of type utf-8 in UTF-8."""
    data = (
        'Content-Type: multipart/report; report-type=global-delivery-status; boundary="g"\r\n\r\n'
        "--g\r\nContent-Type: text/plain\r\n\r\nx\r\n"
        "--g\r\nContent-Type: message/global-delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx\r\n\r\n"
        "Final-Recipient: utf-8; jörg@bücher.example\r\nAction: delivered\r\nStatus: 2.0.0\r\n"
        "--g--\r\n"
    ).encode()
    parsed = parse_report(data)
    assert parsed is not None
    assert parsed.envid is None
    assert parsed.recipients[0].final_recipient == "jörg@bücher.example"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff" * 100,
        b"Subject: hello\r\n\r\nnot a report\r\n",
        # multipart/report without a delivery-status part (a disposition notification)
        (
            b"Content-Type: multipart/report; report-type=disposition-notification;"
            b' boundary="m"\r\n\r\n'
            b"--m\r\nContent-Type: text/plain\r\n\r\nread\r\n"
            b"--m\r\nContent-Type: message/disposition-notification\r\n\r\n"
            b"Final-Recipient: rfc822; bob@example.com\r\n"
            b"Disposition: manual-action/MDN-sent-manually; displayed\r\n"
            b"--m--\r\n"
        ),
        # a report forwarded as an attachment is the outer message's content, not a report
        b"Content-Type: message/rfc822\r\n\r\n" + sample("postfix-relayed.eml"),
    ],
    ids=["empty", "binary", "plain", "mdn", "forwarded"],
)
def test_not_a_report(data: bytes) -> None:
    assert parse_report(data) is None


@pytest.mark.parametrize(
    "status",
    [
        "",
        "Final-Recipient: rfc822; bob@example.com\r\nAction: failed\r\n\r\n",
        "Final-Recipient: rfc822; bob@example.com\r\nStatus: 5.1.1\r\n\r\n",
        "Action: failed\r\nStatus: 5.1.1\r\n\r\n",
        "Final-Recipient: rfc822; bob@example.com\r\nAction: exploded\r\nStatus: 5.1.1\r\n\r\n",
        "Final-Recipient: rfc822; bob@example.com\r\nAction: failed\r\nStatus: 9.9.9\r\n\r\n",
        "Final-Recipient: rfc822;\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n",
    ],
    ids=[
        "no-blocks",
        "no-status",
        "no-action",
        "no-recipient",
        "bad-action",
        "bad-status",
        "empty-address",
    ],
)
def test_blocks_missing_what_rfc_3464_requires(status: str) -> None:
    assert parse_report(report(status=status)) is None


def test_a_report_without_its_per_message_block() -> None:
    data = (
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        + block("bob@example.com")
        + block("carol@example.com", action="delivered", status="2.0.0")
        + "--b--\r\n"
    ).encode()
    parsed = parse_report(data)
    assert parsed is not None and parsed.envid is None
    assert [r.final_recipient for r in parsed.recipients] == [
        "bob@example.com",
        "carol@example.com",
    ]


def test_a_bad_block_does_not_hide_the_good_ones() -> None:
    parsed = parse_report(
        report(status=(block("bob@example.com", action="whatever") + block("carol@example.com")))
    )
    assert parsed is not None
    assert [r.final_recipient for r in parsed.recipients] == ["carol@example.com"]


def test_recipient_blocks_are_bounded() -> None:
    blocks = "".join(block(f"r{i}@example.com") for i in range(MAX_RECIPIENTS + 500))
    parsed = parse_report(report(status=blocks))
    assert parsed is not None
    assert len(parsed.recipients) == MAX_RECIPIENTS
    assert parsed.recipients[-1].final_recipient == f"r{MAX_RECIPIENTS - 1}@example.com"


def test_only_the_first_octets_are_read() -> None:
    """A report whose returned message is huge: the report and the returned header come
    first and are read; the rest is not looked at (the CPU bound shows it)."""
    huge_body = "x" * 78 + "\r\n"
    data = report(
        status=block("bob@example.com"),
        extra=huge_body * (40 * 1024 * 1024 // 80),
    )
    assert len(data) > 100 * REPORT_OCTETS
    started = time.thread_time()
    parsed = parse_report(data)
    assert time.thread_time() - started < 2.0
    assert parsed is not None and parsed.message_id == "sent.1@example.com"


def test_damaged_reports_never_raise() -> None:
    """Postfix's real reports, cut and mangled at random places: None or a report, never an
    exception."""
    rng = random.Random(1464)
    originals = [sample(p.name, crlf=rng.random() < 0.5) for p in SAMPLES.glob("*.eml")]
    for _ in range(400):
        data = bytearray(rng.choice(originals))
        for _ in range(rng.randrange(1, 8)):
            at = rng.randrange(len(data) + 1)
            action = rng.randrange(3)
            if action == 0:
                del data[at : at + rng.randrange(1, 200)]
            elif action == 1:
                data[at:at] = rng.choice(
                    [b"\r\n", b"\r\n\r\n", b"--", b";", b"\x00", b"\xff", b":"]
                )
            else:
                data = data[:at]
        result = parse_report(bytes(data))
        assert result is None or isinstance(result, DeliveryReport)

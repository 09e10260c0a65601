"""One mail transaction on an open session (RFC 5321 3.3): MAIL, RCPT for each recipient, DATA.

DATA is sent in two steps so a failure says whether the message may have gone: the content
is written block by block, each waited for (the server reads it), and only then the final
".". A cut while writing the content is safe to retry (the server never saw the end, RFC 5321
4.1.1.4 has it discard the transaction); a cut or timeout after the "." is ambiguous.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiosmtplib import SMTPServerDisconnected
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from gateway.offload import sized
from gateway.smtp.connection import Session
from gateway.smtp.envelope import Envelope, options
from gateway.smtp.outcome import Outcome, Phase, SmtpFailure
from gateway.smtp.replies import Reply

# Blocks of content written before waiting for the transport to drain.
BLOCK = 64 * 1024


def wire_octets(message: bytes) -> bytes:
    """The content as DATA carries it: lines ended by CRLF and dot-stuffed (RFC 5321 4.5.2).

    SMTP has no way to send a bare LF or CR (RFC 5321 2.3.8): the library turns each into
    CRLF, the only change made to the message; 8-bit octets are sent as they are.
    """
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message))


def _path(address: str) -> bytes:
    return b"<" + address.encode("utf-8") + b">"


# Called once the content is written, before the final ".": the caller's last word on whether
# the message may go (a delayed send records there that it may have gone). Raising abandons it.
BeforeFinal = Callable[[], Awaitable[None]]


async def run(
    session: Session,
    envelope: Envelope,
    message: bytes,
    before_final: BeforeFinal | None = None,
) -> Outcome:
    """MAIL, RCPTs, DATA; returns when the message was accepted for at least one recipient,
    raises :class:`SmtpFailure` otherwise."""
    timeout = session.timeouts.command
    params = [o.encode("utf-8") for o in options(envelope.parameters)]
    reply = await session.command(
        Phase.MAIL, "MAIL", b"MAIL", b"FROM:" + _path(envelope.mail_from), *params, timeout=timeout
    )
    if reply.code != 250:
        raise SmtpFailure(Phase.MAIL, reply)
    accepted: dict[str, Reply] = {}
    refused: dict[str, Reply] = {}
    for recipient in envelope.recipients:
        params = [o.encode("utf-8") for o in options(recipient.parameters)]
        reply = await session.command(
            Phase.RCPT, "RCPT", b"RCPT", b"TO:" + _path(recipient.address), *params, timeout=timeout
        )
        # RFC 5321 4.1.1.3: 250 or 251 (will forward) accept the recipient.
        (accepted if reply.code in (250, 251) else refused)[recipient.address] = reply
    if not accepted:
        # A 4xx among the refusals makes the whole worth retrying later.
        worst = next((r for r in refused.values() if r.transient), next(iter(refused.values())))
        raise SmtpFailure(Phase.RCPT, worst, refused)
    reply = await session.command(Phase.DATA, "DATA", b"DATA", timeout=timeout)
    if reply.code != 354:
        raise SmtpFailure(Phase.DATA, reply, refused)
    # A regex over the whole message: beside the loop once it is large (up to the upload
    # limit, 50 MB by default, it takes most of a second).
    await _write_content(session, await sized(len(message), wire_octets, message))
    if before_final is not None:
        await _ask(session, before_final, refused)
    final = await session.command(Phase.FINAL, ".", b".", timeout=session.timeouts.final)
    if not 200 <= final.code < 300:
        raise SmtpFailure(Phase.FINAL, final, refused)
    return Outcome(accepted, refused, final)


async def _ask(session: Session, before_final: BeforeFinal, refused: dict[str, Reply]) -> None:
    """Run the caller's hook; if it raises, drop the connection without the ".": the server
    then discards the transaction (RFC 5321 4.1.1.4), so nothing was sent and a retry is safe.
    A QUIT would be read as more content."""
    try:
        await before_final()
    except Exception as exc:
        session.smtp.close()
        raise SmtpFailure(
            Phase.DATA, None, refused, detail="abandoned before the final '.'"
        ) from exc


async def _write_content(session: Session, octets: bytes) -> None:
    """Write the content without its final ".", waiting after each block until the transport
    takes more, so a cut or a stalled server is seen here and not after the "."."""
    protocol = session.smtp.protocol
    if protocol is None:
        raise SmtpFailure(Phase.DATA, None, detail="connection lost")
    view = memoryview(octets)
    try:
        for start in range(0, len(view), BLOCK):
            protocol.write(bytes(view[start : start + BLOCK]))
            async with asyncio.timeout(session.timeouts.data_block):
                # aiosmtplib's protocol has asyncio's flow control (FlowControlMixin); its
                # drain is the stream writer's, which the library has no public name for.
                await protocol._drain_helper()
    except (ConnectionError, TimeoutError, OSError, SMTPServerDisconnected) as exc:
        session.smtp.close()
        raise SmtpFailure(Phase.DATA, None, detail="connection lost while sending") from exc

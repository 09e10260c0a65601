"""The SMTP client's outcomes and failures, against the recording sink (tests.smtp_servers)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
from collections.abc import Iterator
from dataclasses import replace

import pytest

from gateway.credentials import Credentials, Mechanism
from gateway.smtp.connection import Authorization, SmtpEndpoint, Timeouts
from gateway.smtp.envelope import Envelope, Recipient
from gateway.smtp.outcome import AuthenticationRefused, Phase, SmtpFailure, SmtpUnavailable
from gateway.smtp.pool import SessionPool
from gateway.smtp.sender import SmtpSender
from tests.conftest import serving
from tests.servers import LOOPBACK, make_data_dir, refused_port
from tests.smtp_servers import CUT_AFTER_OCTETS, Sink

AUTH = Authorization.user(Credentials("alice", "alice-pw"))


def tag() -> str:
    """A fresh word for this test's addresses, so tests sharing the sink never mix."""
    return secrets.token_hex(4)


def endpoint(sink: Sink, **timeouts: float) -> SmtpEndpoint:
    return SmtpEndpoint(LOOPBACK, sink.port, timeouts=replace(Timeouts(), **timeouts))


def envelope(*recipients: str, **parameters: str | None) -> Envelope:
    return Envelope("alice@example.com", parameters, tuple(Recipient(r) for r in recipients))


MESSAGE = b"From: alice@example.com\r\nSubject: test\r\n\r\nHello.\r\n"


async def send(sink: Sink, env: Envelope, message: bytes = MESSAGE, **timeouts: float) -> None:
    smtp = SmtpSender(endpoint(sink, **timeouts))
    try:
        await smtp.send(AUTH, env, message)
    finally:
        await smtp.close()


async def test_one_refused_recipient_of_three(smtp_sink: Sink) -> None:
    t = tag()
    good, bad, later = f"a-{t}@x.org", f"reject-{t}@x.org", f"tempfail-{t}@x.org"
    smtp = SmtpSender(endpoint(smtp_sink))
    try:
        outcome = await smtp.send(AUTH, envelope(good, bad, later), MESSAGE)
    finally:
        await smtp.close()
    assert list(outcome.accepted) == [good]
    assert {a: (r.code, r.enhanced) for a, r in outcome.refused.items()} == {
        bad: (550, "5.1.1"),
        later: (451, "4.3.0"),
    }
    assert (
        str(outcome.refused[bad]) == f"550 5.1.1 <{bad}>: Recipient address rejected: unknown user"
    )
    [received] = smtp_sink.to(good)
    assert received.recipients == (good,)
    assert received.content == MESSAGE


async def test_every_recipient_refused(smtp_sink: Sink) -> None:
    t = tag()
    bad, worse = f"reject-{t}@x.org", f"reject-{t}-2@x.org"
    with pytest.raises(SmtpFailure) as caught:
        await send(smtp_sink, envelope(bad, worse))
    failure = caught.value
    assert failure.phase is Phase.RCPT
    assert set(failure.refused) == {bad, worse}
    assert all(r.code == 550 for r in failure.refused.values())
    assert not failure.transient and not failure.ambiguous
    assert smtp_sink.to(bad) == []


async def test_every_recipient_refused_one_for_now(smtp_sink: Sink) -> None:
    t = tag()
    with pytest.raises(SmtpFailure) as caught:
        await send(smtp_sink, envelope(f"reject-{t}@x.org", f"tempfail-{t}@x.org"))
    # A 4xx among the refusals: trying again later may get the message through.
    assert caught.value.transient


@pytest.mark.parametrize(
    ("prefix", "code", "transient"), [("data-tempfail", 451, True), ("data-reject", 554, False)]
)
async def test_refused_after_the_final_dot(
    smtp_sink: Sink, prefix: str, code: int, transient: bool
) -> None:
    address = f"{prefix}-{tag()}@x.org"
    with pytest.raises(SmtpFailure) as caught:
        await send(smtp_sink, envelope(address))
    failure = caught.value
    assert failure.phase is Phase.FINAL
    assert failure.reply is not None and failure.reply.code == code
    assert failure.transient is transient
    assert not failure.ambiguous
    assert smtp_sink.to(address) == []


async def test_a_refused_port_is_unavailable_and_transient() -> None:
    with refused_port() as port:
        smtp = SmtpSender(SmtpEndpoint(LOOPBACK, port))
        with pytest.raises(SmtpUnavailable) as caught:
            await smtp.send(AUTH, envelope("bob@x.org"), MESSAGE)
    assert caught.value.phase is Phase.CONNECT
    assert caught.value.transient and not caught.value.ambiguous


async def test_a_cut_while_the_content_goes_is_transient_and_nothing_arrives(
    smtp_sink: Sink,
) -> None:
    """The sink reads one block and drops the connection; the content is far larger than
    what the kernels buffer, so the client sees the cut before it could write the "."."""
    address = f"cut-in-data-{tag()}@x.org"
    body = b"0123456789abcdef" * (16 * 1024 * 1024 // 16)
    cuts = smtp_sink.cuts
    with pytest.raises(SmtpFailure) as caught:
        await send(smtp_sink, envelope(address), MESSAGE + body + b"\r\n")
    failure = caught.value
    assert failure.phase is Phase.DATA and failure.reply is None
    assert failure.transient and not failure.ambiguous
    assert smtp_sink.cuts == cuts + 1
    assert smtp_sink.to(address) == []
    assert len(body) > 100 * CUT_AFTER_OCTETS


async def test_a_cut_after_the_final_dot_is_ambiguous(smtp_sink: Sink) -> None:
    """RFC 1047: the server has the message, the client never hears so."""
    address = f"cut-after-dot-{tag()}@x.org"
    with pytest.raises(SmtpFailure) as caught:
        await send(smtp_sink, envelope(address))
    failure = caught.value
    assert failure.phase is Phase.FINAL and failure.reply is None
    assert failure.ambiguous and not failure.transient
    assert len(smtp_sink.to(address)) == 1


async def test_no_reply_to_the_final_dot_in_time_is_ambiguous(smtp_sink: Sink) -> None:
    address = f"stall-after-dot-{tag()}@x.org"
    with pytest.raises(SmtpFailure) as caught:
        await send(smtp_sink, envelope(address), final=0.5)
    assert caught.value.ambiguous
    assert len(smtp_sink.to(address)) == 1


async def test_parameters_are_sent_as_given(smtp_sink: Sink) -> None:
    address = f"params-{tag()}@x.org"
    env = Envelope(
        "alice@example.com",
        {"ENVID": "Mixed-Case-Id", "RET": "HDRS", "BODY": "8BITMIME"},
        (Recipient(address, {"NOTIFY": "SUCCESS,FAILURE", "ORCPT": f"rfc822;{address}"}),),
    )
    await send(smtp_sink, env)
    [received] = smtp_sink.to(address)
    assert received.mail_parameters == ("ENVID=Mixed-Case-Id", "RET=HDRS", "BODY=8BITMIME")
    assert received.rcpt_parameters[address] == (
        "NOTIFY=SUCCESS,FAILURE",
        f"ORCPT=rfc822;{address}",
    )
    assert received.auth_user == "alice"


async def test_8bit_octets_are_sent_as_they_are(smtp_sink: Sink) -> None:
    address = f"eight-bit-{tag()}@x.org"
    raw = b"Subject: =?utf-8?q?x?=\r\n\r\n\xc3\xa9\xff\x80 .\r\n.\r\n..\r\n"
    await send(smtp_sink, envelope(address, BODY="8BITMIME"), raw)
    assert smtp_sink.to(address)[0].content == raw


async def test_a_clean_session_is_reused_and_a_failed_one_is_not(smtp_sink: Sink) -> None:
    t = tag()
    smtp = SmtpSender(endpoint(smtp_sink))
    try:
        await smtp.send(AUTH, envelope(f"first-{t}@x.org"), MESSAGE)
        await smtp.send(AUTH, envelope(f"second-{t}@x.org"), MESSAGE)
        with pytest.raises(SmtpFailure):
            await smtp.send(AUTH, envelope(f"data-reject-{t}@x.org"), MESSAGE)
        assert smtp.idle_sessions == 0
        await smtp.send(AUTH, envelope(f"third-{t}@x.org"), MESSAGE)
    finally:
        await smtp.close()
    first, second, third = (smtp_sink.to(f"{n}-{t}@x.org")[0] for n in ("first", "second", "third"))
    assert first.connection == second.connection
    assert third.connection != first.connection


async def test_another_password_never_takes_over_a_session(smtp_sink: Sink) -> None:
    t = tag()
    smtp = SmtpSender(endpoint(smtp_sink))
    try:
        await smtp.send(AUTH, envelope(f"own-{t}@x.org"), MESSAGE)
        other = Authorization.user(Credentials("alice", "a-guess"))
        await smtp.send(other, envelope(f"guess-{t}@x.org"), MESSAGE)
    finally:
        await smtp.close()
    assert (
        smtp_sink.to(f"own-{t}@x.org")[0].connection
        != smtp_sink.to(f"guess-{t}@x.org")[0].connection
    )


async def test_a_user_holds_at_most_max_per_user_sessions(smtp_sink: Sink) -> None:
    t = tag()
    connections = smtp_sink.connections
    smtp = SmtpSender(endpoint(smtp_sink), pool=SessionPool(max_per_user=2))
    try:
        await asyncio.gather(
            *(smtp.send(AUTH, envelope(f"burst-{i}-{t}@x.org"), MESSAGE) for i in range(6))
        )
    finally:
        await smtp.close()
    assert all(len(smtp_sink.to(f"burst-{i}-{t}@x.org")) == 1 for i in range(6))
    assert smtp_sink.connections - connections <= 2


async def test_a_wrong_password_at_the_sink(smtp_sink: Sink) -> None:
    smtp = SmtpSender(endpoint(smtp_sink))
    with pytest.raises(SmtpFailure) as caught:
        await smtp.send(
            Authorization.user(Credentials("alice", "wrong-pw")), envelope("x@x.org"), MESSAGE
        )
    assert caught.value.phase is Phase.AUTH
    assert caught.value.reply is not None and caught.value.reply.code == 535


@pytest.fixture(scope="module", params=["starttls", "implicit"])
def tls_sink(request: pytest.FixtureRequest) -> Iterator[Sink]:
    yield from serving(Sink(make_data_dir("jg-sink-tls-"), tls=request.param))


def verifying(sink: Sink, cafile: str | None) -> SmtpEndpoint:
    mode = "implicit" if sink.tls == "implicit" else "starttls"
    return SmtpEndpoint(
        LOOPBACK, sink.port, tls=mode, ssl_context=ssl.create_default_context(cafile=cafile)
    )


async def test_tls_verified_with_the_ca_file(tls_sink: Sink) -> None:
    address = f"tls-{tag()}@x.org"
    smtp = SmtpSender(verifying(tls_sink, str(tls_sink.cert)))
    try:
        extensions = await smtp.probe()
        await smtp.send(AUTH, envelope(address), MESSAGE)
    finally:
        await smtp.close()
    assert not extensions.has("STARTTLS")  # asked again after TLS (RFC 3207 4.2)
    assert len(tls_sink.to(address)) == 1


async def test_tls_with_an_unknown_certificate_is_refused(tls_sink: Sink) -> None:
    smtp = SmtpSender(verifying(tls_sink, None))
    with pytest.raises(SmtpUnavailable) as caught:
        await smtp.send(AUTH, envelope(f"never-{tag()}@x.org"), MESSAGE)
    assert caught.value.phase in (Phase.CONNECT, Phase.STARTTLS)


async def test_starttls_required_but_not_offered(smtp_sink: Sink) -> None:
    smtp = SmtpSender(replace(endpoint(smtp_sink), tls="starttls"))
    with pytest.raises(SmtpUnavailable) as caught:
        await smtp.probe()
    assert caught.value.phase is Phase.STARTTLS


@pytest.fixture(scope="module")
def login_only_sink() -> Iterator[Sink]:
    yield from serving(
        Sink(make_data_dir("jg-sink-login-"), auth_excluded=("PLAIN", "OAUTHBEARER"))
    )


async def test_login_where_plain_is_not_offered(login_only_sink: Sink) -> None:
    address = f"login-{tag()}@x.org"
    await send(login_only_sink, envelope(address))
    assert login_only_sink.to(address)[0].auth_user == "alice"
    smtp = SmtpSender(endpoint(login_only_sink))
    with pytest.raises(SmtpFailure) as caught:
        await smtp.send(
            Authorization.user(Credentials("alice", "wrong-again")), envelope(address), MESSAGE
        )
    assert caught.value.phase is Phase.AUTH


@pytest.mark.parametrize(
    ("credentials", "excluded"),
    [
        (Credentials("alice", "secret-1"), ("PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2")),
        (Credentials("alice", "token-1", Mechanism.BEARER), ("OAUTHBEARER", "XOAUTH2")),
    ],
)
async def test_no_secret_goes_to_a_server_that_offers_no_mechanism_for_it(
    credentials: Credentials, excluded: tuple[str, ...]
) -> None:
    """A server that does not offer a mechanism for this login (AUTH hidden before TLS, a
    relay) never receives the secret: the gateway's own 530, not the server's answer to an
    AUTH it never asked for."""
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(
            contextlib.contextmanager(serving)(
                Sink(make_data_dir("jg-sink-noauth-"), auth_excluded=excluded)
            )
        )
        address = f"noauth-{tag()}@x.org"
        with pytest.raises(AuthenticationRefused) as caught:
            await send_as(sink, Authorization.user(credentials), envelope(address))
        assert caught.value.reply is not None and caught.value.reply.code == 530
        assert "offers no AUTH mechanism" in str(caught.value)
        assert sink.to(address) == []


@pytest.mark.parametrize("excluded", [(), ("OAUTHBEARER",)])
async def test_bearer_tokens(excluded: tuple[str, ...]) -> None:
    """OAUTHBEARER (RFC 7628) where offered, else XOAUTH2; a refused token goes through the
    error challenge to a 535."""
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(
            contextlib.contextmanager(serving)(
                Sink(make_data_dir("jg-sink-bearer-"), auth_excluded=excluded)
            )
        )
        token = Credentials("alice@example.com", "good.token-1", Mechanism.BEARER)
        address = f"bearer-{tag()}@x.org"
        await send_as(sink, Authorization.user(token), envelope(address))
        assert sink.to(address)[0].auth_user == "alice@example.com"
        refused = Credentials("alice@example.com", "bad.token", Mechanism.BEARER)
        with pytest.raises(SmtpFailure) as caught:
            await send_as(sink, Authorization.user(refused), envelope(address))
        assert caught.value.phase is Phase.AUTH
        assert caught.value.reply is not None and caught.value.reply.code == 535
        assert "bad.token" not in str(caught.value) + repr(caught.value)


async def send_as(sink: Sink, auth: Authorization, env: Envelope) -> None:
    smtp = SmtpSender(endpoint(sink))
    try:
        await smtp.send(auth, env, MESSAGE)
    finally:
        await smtp.close()


async def test_a_cancelled_send_leaves_no_session_behind(smtp_sink: Sink) -> None:
    address = f"stall-after-dot-{tag()}@x.org"
    smtp = SmtpSender(endpoint(smtp_sink))
    task = asyncio.create_task(smtp.send(AUTH, envelope(address), MESSAGE))
    while not smtp_sink.to(address):
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert smtp.idle_sessions == 0
    await smtp.close()

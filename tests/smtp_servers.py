"""Real SMTP servers for the tests: a Postfix submission server and an aiosmtpd sink.

:class:`Postfix` is the realistic path: a submission port with AUTH PLAIN/LOGIN checked by
Dovecot's SASL, a relay port for loopback without AUTH, mail for the local domain handed to
Dovecot over LMTP, everything else to a sink (or discarded), and real DSNs. It needs a
:class:`~tests.servers.Dovecot` started with ``lmtp_port`` and ``sasl_port``. It runs as root
(Postfix's master drops to the ``postfix`` user) and starts in 2-3 s: tests share one.

:class:`Sink` is the controllable one: it records every transaction exactly (parameters as
sent, octets as received after dot-unstuffing) and fails on request. Faults are chosen by the
addresses a test uses, so tests sharing one sink never disturb each other:

=========================== ==============================================================
address (local part)        what the sink does
=========================== ==============================================================
``reject-*`` (RCPT)         550 5.1.1 for that recipient
``tempfail-*`` (RCPT)       451 4.3.0 for that recipient
``slow-*`` (RCPT)           250, after ``Sink.slow_seconds`` (a transaction held open)
``reject-*`` (MAIL FROM)    550 5.7.1 for the sender
``data-tempfail-once-*``    451 4.3.0 after the first transaction's final "."; then kept
``data-tempfail-*``         451 4.3.0 after the final "." (nothing kept)
``data-reject-*``           554 5.6.0 after the final "." (nothing kept)
``cut-in-data-*``           354, then reads one block of the content and drops the connection
``cut-after-dot-*``         keeps the message, then drops the connection without a reply
``stall-after-dot-*``       keeps the message, then never replies
=========================== ==============================================================

AUTH (PLAIN or LOGIN) succeeds for any user unless the password starts with "wrong" (535);
OAUTHBEARER and XOAUTH2 (RFC 7628) for any token unless it starts with "bad" (an error
challenge, then 535). ``auth_excluded`` takes mechanisms off the EHLO list.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from tests.servers import LOOPBACK, free_port, self_signed_cert, wait_for_port

# ---------------------------------------------------------------------------------------------
# Postfix

_MAIN_CF = """\
# Written by tests/smtp_servers.py for one test run; nothing of /etc/postfix is changed.
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
maillog_file = {root}/log/postfix.log
maillog_file_prefixes = {root}/log
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = smtp.test.localhost
mydomain = test.localhost
myorigin = $mydomain
mydestination =
local_recipient_maps =
mynetworks = 127.0.0.0/8
biff = no
append_dot_mydomain = no
smtputf8_enable = yes
message_size_limit = {message_size_limit}
# Local domains go to Dovecot's LMTP (which finds alice@example.com as alice); others out.
virtual_mailbox_domains = {local_domains}
virtual_transport = lmtp:inet:127.0.0.1:{lmtp_port}
default_transport = {outbound}
relay_transport = {outbound}
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = {verify}permit_mynetworks, reject
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:{sasl_port}
smtpd_sasl_auth_enable = no
smtpd_tls_security_level = none
smtp_tls_security_level = none
lmtp_tls_security_level = none
# Bounce at once, retry soon: tests wait for DSNs, not for queues.
bounce_queue_lifetime = 0
maximal_queue_lifetime = 1h
queue_run_delay = 10s
minimal_backoff_time = 10s
maximal_backoff_time = 60s
{extra}"""

# The daemons a queue-and-deliver Postfix needs, none chrooted (a chroot would need copies of
# /etc files in the queue directory). Ports are the relay port and the submission port.
_MASTER_CF = """\
127.0.0.1:{relay_port} inet n - n - - smtpd
127.0.0.1:{submission_port} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions={verify}permit_sasl_authenticated,reject{sender_check}
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


@dataclass
class Postfix:
    """A Postfix 3.7 of the test run's own, in ``root`` (config, queue and log)."""

    root: Path
    # Dovecot's SASL auth listener and its LMTP listener (Dovecot's lmtp_port, sasl_port).
    sasl_port: int
    lmtp_port: int
    # Where mail for other domains goes: a sink's port, or None to discard it.
    outbound_port: int | None = None
    local_domains: str = "example.com"
    relay_port: int = field(default_factory=free_port)
    submission_port: int = field(default_factory=free_port)
    # Opt-ins: the SIZE limit; submission refuses senders the login does not own (553 5.7.1,
    # at the first RCPT); unknown local recipients refused at RCPT (550 5.1.1) after a probe.
    message_size_limit: int = 52_428_800
    sender_login_check: bool = False
    verify_rcpt: bool = False

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def maillog_file(self) -> Path:
        return self.root / "log" / "postfix.log"

    @property
    def pidfile(self) -> Path:
        return self.root / "spool" / "pid" / "master.pid"

    @property
    def url(self) -> str:
        """The submission port, as GATEWAY_SMTP_URL."""
        return f"smtp://{LOOPBACK}:{self.submission_port}"

    def write_config(self) -> None:
        for sub in ("etc", "spool", "data", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        subprocess.run(["chown", "postfix", str(self.root / "data")], check=True)
        etc = self.config_dir
        verify = ""
        extra = []
        if self.verify_rcpt:
            (etc / "verify-domains").write_text(
                "".join(
                    f"{domain.strip()} reject_unverified_recipient\n"
                    for domain in self.local_domains.split(",")
                )
            )
            verify = f"check_recipient_access,texthash:{etc}/verify-domains,"
            # A definite 550 (Postfix's default is 450), and answers kept in memory only.
            extra += [
                "unverified_recipient_reject_code = 550",
                "address_verify_map =",
                "address_verify_poll_delay = 1s",
            ]
        sender_check = ""
        if self.sender_login_check:
            domains = "|".join(d.strip().replace(".", r"\.") for d in self.local_domains.split(","))
            # The login "alice" owns alice@ and alice+tag@ each local domain.
            (etc / "sender-logins").write_text(
                f"/^([^@+]+)(\\+[^@]*)?@({domains})$/ ${{1}}, ${{1}}@${{3}}\n"
            )
            extra.append(f"smtpd_sender_login_maps = regexp:{etc}/sender-logins")
            sender_check = "\n  -o smtpd_sender_restrictions=reject_sender_login_mismatch"
        outbound = (
            "discard:" if self.outbound_port is None else f"smtp:[{LOOPBACK}]:{self.outbound_port}"
        )
        (etc / "main.cf").write_text(
            _MAIN_CF.format(
                root=self.root,
                message_size_limit=self.message_size_limit,
                local_domains=self.local_domains,
                lmtp_port=self.lmtp_port,
                sasl_port=self.sasl_port,
                outbound=outbound,
                verify=verify,
                extra="".join(line + "\n" for line in extra),
            )
        )
        # master.cf options are single words: the restriction lists use commas, no spaces.
        (etc / "master.cf").write_text(
            _MASTER_CF.format(
                relay_port=self.relay_port,
                submission_port=self.submission_port,
                verify=verify,
                sender_check=sender_check,
            )
        )

    def start(self) -> None:
        self.write_config()
        etc = str(self.config_dir)
        # "check" makes the queue directories with the right owners.
        subprocess.run(["postfix", "-c", etc, "check"], capture_output=True, check=False)
        subprocess.run(
            ["postfix", "-c", etc, "start"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        try:
            wait_for_port(self.relay_port, timeout=20)
            wait_for_port(self.submission_port, timeout=20)
        except RuntimeError:
            log = self.maillog_file.read_text() if self.maillog_file.exists() else ""
            raise RuntimeError(f"postfix did not start:\n{log[-2000:]}") from None

    def stop(self) -> None:
        if not self.pidfile.exists():
            return
        pid = int(self.pidfile.read_text().strip())
        subprocess.run(
            ["postfix", "-c", str(self.config_dir), "stop"], capture_output=True, check=False
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def log_text(self) -> str:
        return self.maillog_file.read_text() if self.maillog_file.exists() else ""


# ---------------------------------------------------------------------------------------------
# The sink

# Parameters the sink takes on MAIL and RCPT besides SIZE, BODY and SMTPUTF8, and the EHLO
# keyword each needs.
_DSN_MAIL = {"RET", "ENVID"}
_DSN_RCPT = {"NOTIFY", "ORCPT"}
_RELEASE_MAIL = {"HOLDFOR", "HOLDUNTIL"}
# How much of the content a cut-in-data- transaction reads before dropping the connection.
CUT_AFTER_OCTETS = 64 * 1024


@dataclass(frozen=True)
class Received:
    """One transaction the sink accepted (or kept before cutting), exactly as sent."""

    connection: int  # the sink's number for the connection it came on
    auth_user: str | None
    mail_from: str
    mail_parameters: tuple[str, ...]
    recipients: tuple[str, ...]
    rcpt_parameters: dict[str, tuple[str, ...]]
    content: bytes


def _local(address: str) -> str:
    return address.rpartition("@")[0].lower() if "@" in address else address.lower()


def _any_recipient(envelope: Envelope, prefix: str) -> bool:
    return any(_local(r).startswith(prefix) for r in envelope.rcpt_tos)


class _SinkSMTP(SMTP):
    """aiosmtpd's server with MAIL and RCPT parsed here: parameters kept as sent (aiosmtpd
    upper-cases them), DSN and FUTURERELEASE parameters taken, and the null sender allowed."""

    def __init__(self, sink: Sink, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.sink = sink
        self.number = 0
        self.mail_parameters: tuple[str, ...] = ()
        self.rcpt_parameters: dict[str, tuple[str, ...]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.number = self.sink._connected()
        super().connection_made(transport)

    def _split(self, arg: str | None, keyword: str) -> tuple[str, list[str]] | None:
        text = self._strip_command_keyword(keyword, arg or "")
        if text is None or not text.startswith("<") or ">" not in text:
            return None
        address, _, rest = text[1:].partition(">")
        return address, rest.split()

    def _unknown(self, parameters: list[str], allowed: set[str]) -> bool:
        return any(p.partition("=")[0].upper() not in allowed for p in parameters)

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("MAIL"):
            return
        parsed = self._split(arg, "FROM:")
        assert self.envelope is not None
        if parsed is None:
            await self.push("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        if self.envelope.mail_from is not None:
            await self.push("503 5.5.1 Error: nested MAIL command")
            return
        address, parameters = parsed
        allowed = {"SIZE", "BODY", "SMTPUTF8", "AUTH"}
        allowed |= _DSN_MAIL if self.sink.dsn else set()
        allowed |= _RELEASE_MAIL if self.sink.future_release else set()
        if self._unknown(parameters, allowed):
            await self.push("555 5.5.4 Unsupported option")
            return
        size = next((p[5:] for p in parameters if p.upper().startswith("SIZE=")), None)
        if size is not None and (not size.isdigit() or int(size) > self.sink.size):
            await self.push("552 5.3.4 Message size exceeds fixed limit")
            return
        if _local(address).startswith("reject-"):
            await self.push(f"550 5.7.1 <{address}>: Sender address rejected")
            return
        self.envelope.mail_from = address
        self.mail_parameters = tuple(parameters)
        self.rcpt_parameters = {}
        await self.push("250 2.1.0 Ok")

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("RCPT"):
            return
        assert self.envelope is not None
        if self.envelope.mail_from is None:
            await self.push("503 5.5.1 Error: need MAIL command")
            return
        parsed = self._split(arg, "TO:")
        if parsed is None or not parsed[0]:
            await self.push("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        address, parameters = parsed
        if self._unknown(parameters, _DSN_RCPT if self.sink.dsn else set()):
            await self.push("555 5.5.4 Unsupported option")
            return
        local = _local(address)
        if local.startswith("reject-"):
            await self.push(f"550 5.1.1 <{address}>: Recipient address rejected: unknown user")
            return
        if local.startswith("tempfail-"):
            await self.push(f"451 4.3.0 <{address}>: Recipient address rejected: try again later")
            return
        if local.startswith("slow-"):
            self.sink._note_slow()
            await asyncio.sleep(self.sink.slow_seconds)
        self.envelope.rcpt_tos.append(address)
        self.rcpt_parameters[address] = tuple(parameters)
        await self.push("250 2.1.5 Ok")

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        envelope = self.envelope
        if envelope is not None and envelope.rcpt_tos and _any_recipient(envelope, "cut-in-data-"):
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                await self._reader.readexactly(CUT_AFTER_OCTETS)
            self.sink._note_cut()
            assert self.transport is not None
            self.transport.abort()
            return
        await super().smtp_DATA(arg)


class _Handler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        extra = []
        if self.sink.dsn:
            extra.append("250-DSN")
        if self.sink.future_release:
            interval, until = self.sink.future_release
            extra.append(f"250-FUTURERELEASE {interval} {until}")
        return [*responses[:-1], *extra, responses[-1]]

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        text = _initial(args)
        gs2 = text.split("\x01", 1)[0].split(",")
        user = next((p[2:] for p in gs2 if p.startswith("a=")), None)
        token = _bearer_token(text)
        if token.startswith("bad"):
            await _bearer_refused(server)
        return _bearer_login(user, token)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        text = _initial(args)
        user = next((p[5:] for p in text.split("\x01") if p.startswith("user=")), None)
        token = _bearer_token(text)
        if token.startswith("bad"):
            await _bearer_refused(server)
        return _bearer_login(user, token)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(server, _SinkSMTP)
        once = [r for r in envelope.rcpt_tos if _local(r).startswith("data-tempfail-once-")]
        if once:
            if self.sink._first_time(once):
                return "451 4.3.0 Error: try again later"
        elif _any_recipient(envelope, "data-tempfail-"):
            return "451 4.3.0 Error: try again later"
        if _any_recipient(envelope, "data-reject-"):
            return "554 5.6.0 Error: message refused"
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        self.sink._keep(
            Received(
                connection=server.number,
                auth_user=login.decode() if isinstance(login, bytes) else None,
                mail_from=envelope.mail_from or "",
                mail_parameters=server.mail_parameters,
                recipients=tuple(envelope.rcpt_tos),
                rcpt_parameters=dict(server.rcpt_parameters),
                content=bytes(envelope.original_content or b""),
            )
        )
        if _any_recipient(envelope, "cut-after-dot-"):
            assert server.transport is not None
            server.transport.abort()
            return "250 2.0.0 never sent"
        if _any_recipient(envelope, "stall-after-dot-"):
            await asyncio.sleep(3600)
        return "250 2.0.0 Ok: queued"


def _bearer_login(user: str | None, token: str) -> AuthResult:
    if token.startswith("bad"):
        return AuthResult(success=False, handled=False, message="535 5.7.8 Error: bad token")
    return AuthResult(success=True, auth_data=LoginPassword((user or "").encode(), token.encode()))


async def _bearer_refused(server: SMTP) -> None:
    """RFC 7628 3.2.3: an error challenge; the client answers %x01 and gets the failure."""
    await server.challenge_auth('{"status":"invalid_token"}')


def _initial(args: list[str]) -> str:
    return base64.b64decode(args[1]).decode() if len(args) > 1 else ""


def _bearer_token(text: str) -> str:
    for part in text.split("\x01"):
        if part.startswith("auth=Bearer "):
            return part.removeprefix("auth=Bearer ")
    return ""


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    if not isinstance(data, LoginPassword) or data.password.startswith(b"wrong"):
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Error: authentication failed"
        )
    return AuthResult(success=True, auth_data=data)


@dataclass
class Sink:
    """An SMTP server in a thread of its own that keeps what it is sent and fails on request."""

    root: Path
    port: int = field(default_factory=free_port)
    # TLS: "starttls" offers STARTTLS, "implicit" speaks TLS from the start (smtps).
    tls: Literal["none", "starttls", "implicit"] = "none"
    dsn: bool = True
    # FUTURERELEASE's (max interval seconds, max date-time) when offered (RFC 4865).
    future_release: tuple[int, str] | None = None
    size: int = 33_554_432
    auth_excluded: tuple[str, ...] = ()
    # How long a slow-* recipient waits for its RCPT reply.
    slow_seconds: float = 2.0
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    cuts: int = 0
    # RCPTs of slow-* recipients the sink began to wait on.
    slowed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # data-tempfail-once-* recipients already refused once.
    _failed_once: set[str] = field(default_factory=set)
    _controller: Controller | None = None

    @property
    def cert(self) -> Path:
        """The sink's certificate (self-signed: also the CA file that verifies it)."""
        return self.root / "cert.pem"

    @property
    def url(self) -> str:
        if self.tls == "implicit":
            return f"smtps://{LOOPBACK}:{self.port}"
        suffix = "?starttls" if self.tls == "starttls" else ""
        return f"smtp://{LOOPBACK}:{self.port}{suffix}"

    def _connected(self) -> int:
        with self._lock:
            self.connections += 1
            return self.connections

    def _keep(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    def _first_time(self, addresses: list[str]) -> bool:
        """Whether none of ``addresses`` was failed once already (they are, from now on)."""
        with self._lock:
            first = self._failed_once.isdisjoint(addresses)
            self._failed_once.update(addresses)
            return first

    def _note_slow(self) -> None:
        with self._lock:
            self.slowed += 1

    def _note_cut(self) -> None:
        with self._lock:
            self.cuts += 1

    def to(self, address: str) -> list[Received]:
        """The transactions kept that name ``address`` among their recipients."""
        with self._lock:
            return [r for r in self.received if address in r.recipients]

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        context: ssl.SSLContext | None = None
        if self.tls != "none":
            cert, key = self_signed_cert(self.root)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
        handler = _Handler(self)
        sink = self

        class _Controller(Controller):
            def factory(self) -> SMTP:
                return _SinkSMTP(
                    sink,
                    handler,
                    data_size_limit=sink.size,
                    enable_SMTPUTF8=True,
                    authenticator=_authenticate,
                    auth_exclude_mechanism=sink.auth_excluded,
                    auth_require_tls=False,
                    tls_context=context if sink.tls == "starttls" else None,
                    hostname="sink.test.localhost",
                )

        self._controller = _Controller(
            handler,
            hostname=LOOPBACK,
            port=self.port,
            ssl_context=context if self.tls == "implicit" else None,
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

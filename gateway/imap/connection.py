"""One upstream IMAP connection: bytes in, parsed responses out, one command at a time.

The transport is asyncio streams; framing and parsing are the pure functions of
:mod:`gateway.imap.framing` and :mod:`gateway.imap.responses`. A connection never carries two
commands at once (the pool hands it to one task at a time, and a lock makes sure), so every
untagged response read while a command runs belongs to that command's result.

Anything that leaves the stream in an unknown state (a timeout, a cancelled command, a
protocol error, a BYE) marks the connection broken; the pool then throws it away.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from gateway.credentials import ActingFor, Mechanism, Origin
from gateway.imap import mailboxes
from gateway.imap.commands import (
    Command,
    Literal,
    Secret,
    authenticate_command,
    authenticate_plain_command,
    id_command,
    login_command,
)
from gateway.imap.errors import (
    AuthenticationFailed,
    CommandFailed,
    CommandTimeout,
    ConnectionLost,
    ImapError,
    ProtocolError,
    UpstreamUnavailable,
)
from gateway.imap.framing import ResponseFramer
from gateway.imap.idle import COALESCE_AT, IdleSession
from gateway.imap.observer import (
    ImapObserver,
    completion,
    connect_failure,
    failure,
    round_trip_name,
    verb,
)
from gateway.imap.responses.capabilities import parse_capabilities, parse_enabled
from gateway.imap.responses.search import parse_esearch, parse_search
from gateway.imap.responses.select import SelectState, fold_select
from gateway.imap.responses.tokens import Continuation, Tagged, Untagged, parse_response
from gateway.imap.search import Criterion, uid_search
from gateway.imap.sequence import UidSet
from gateway.sasl import (
    oauthbearer_initial_response,
    plain_initial_response,
    xoauth2_initial_response,
)

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
MAX_LINE = 1024 * 1024
MAX_LITERAL = 512 * 1024 * 1024
# RFC 5530 codes that say "try again later" rather than "wrong password".
TEMPORARY_CODES = frozenset({"UNAVAILABLE", "SERVERBUG", "LIMIT", "INUSE"})


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach the upstream server."""

    host: str
    port: int
    tls: str  # "plain", "starttls" or "implicit"
    ssl_context: ssl.SSLContext | None = None
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    # Told of every command and connection attempt (metrics); None: nobody listens.
    observer: ImapObserver | None = None


@dataclass
class Result:
    """The untagged responses of one command and its tagged completion.

    Untagged responses are kept as received and parsed on first use, so a caller that only
    needs to know whether anything changed (a digest of ``raw``) pays no parsing.
    """

    raw: list[bytes]
    tagged: Tagged

    @functools.cached_property
    def untagged(self) -> list[Untagged]:
        parsed = [parse_response(raw) for raw in self.raw]
        if not all(isinstance(p, Untagged) for p in parsed):
            raise ProtocolError("untagged response expected")
        return parsed  # type: ignore[return-value]

    def data(self, keyword: str) -> list[Untagged]:
        """The untagged data responses named ``keyword`` (e.g. "LIST", "FETCH")."""
        return [u for u in self.untagged if u.keyword == keyword]


@dataclass
class Selected:
    """The mailbox this connection has selected, so callers need not SELECT it again."""

    name: str
    read_only: bool
    state: SelectState


@dataclass(eq=False)  # identity: the pool keeps connections in sets
class ImapConnection:
    """An open connection to the upstream; see the module docstring for its rules."""

    endpoint: Endpoint
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    capabilities: frozenset[str] = frozenset()
    enabled: frozenset[str] = frozenset()
    selected: Selected | None = None
    broken: bool = False
    last_used: float = field(default_factory=time.monotonic)
    commands_sent: int = 0  # upstream commands, for benchmarks and tests
    round_trips: int = 0  # times the connection sent and then waited; pipelined commands: one
    _framer: ResponseFramer = field(
        default_factory=lambda: ResponseFramer(max_line=MAX_LINE, max_literal=MAX_LITERAL)
    )
    _pending: deque[bytes] = field(default_factory=deque)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _idling: bool = False

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    async def open(cls, endpoint: Endpoint) -> ImapConnection:
        """Connect, read the greeting and start TLS as configured; not yet logged in."""
        try:
            async with asyncio.timeout(endpoint.connect_timeout):
                conn = await cls._open(endpoint)
        except BaseException as exc:
            if endpoint.observer is not None:
                endpoint.observer.connect(connect_failure(exc))
            if isinstance(exc, TimeoutError):
                raise UpstreamUnavailable(
                    f"upstream {endpoint.host}:{endpoint.port} timed out"
                ) from None
            if isinstance(exc, OSError | ssl.SSLError):
                raise UpstreamUnavailable(
                    f"cannot reach upstream {endpoint.host}:{endpoint.port}: {exc.strerror or exc}"
                ) from None
            raise
        if endpoint.observer is not None:
            endpoint.observer.connect("ok")
        return conn

    @classmethod
    async def _open(cls, endpoint: Endpoint) -> ImapConnection:
        implicit = endpoint.tls == "implicit"
        reader, writer = await asyncio.open_connection(
            endpoint.host,
            endpoint.port,
            ssl=endpoint.ssl_context if implicit else None,
            server_hostname=endpoint.host if implicit else None,
            limit=READ_SIZE,
        )
        conn = cls(endpoint, reader, writer)
        conn._tune_socket()
        try:
            await conn._greeting()
            if endpoint.tls == "starttls":
                await conn._starttls()
        except BaseException:
            conn.abort()
            raise
        return conn

    def _tune_socket(self) -> None:
        """Avoid the ~40 ms Nagle/delayed-ACK stall on small commands and responses."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._quickack()

    def _quickack(self) -> None:
        """Linux resets TCP_QUICKACK after a while; re-arm it after every read."""
        option = getattr(socket, "TCP_QUICKACK", None)
        sock = self.writer.get_extra_info("socket")
        if option is not None and sock is not None and sock.family != socket.AF_UNIX:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, option, 1)

    async def _greeting(self) -> None:
        response = await self._read_response()
        if not isinstance(response, Untagged) or response.status not in ("OK", "PREAUTH"):
            raise UpstreamUnavailable("upstream refused the connection")
        if response.status == "PREAUTH":
            # A multi-user gateway must log in as the user; PREAUTH means misconfiguration.
            raise ProtocolError("upstream greeted with PREAUTH; the gateway needs LOGIN")
        self._take_capabilities(response)
        if not self.capabilities:
            await self.refresh_capabilities()

    async def _starttls(self) -> None:
        if "STARTTLS" not in self.capabilities:
            raise UpstreamUnavailable("upstream does not offer STARTTLS")
        await self.execute(Command("STARTTLS"))
        # RFC 9051 6.2.1: nothing may follow the STARTTLS completion in plaintext; anything
        # already buffered was injected before the handshake and must not be trusted.
        if self._pending or self._framer.buffered or len(getattr(self.reader, "_buffer", "")):
            raise ProtocolError("upstream sent data after STARTTLS completion")
        await self.writer.start_tls(
            self.endpoint.ssl_context or ssl.create_default_context(),
            server_hostname=self.endpoint.host,
        )
        # RFC 3501 6.2.1: capabilities learned before TLS must be discarded.
        self.capabilities = frozenset()
        await self.refresh_capabilities()

    async def login(
        self,
        username: str,
        secret: str,
        *,
        mechanism: Mechanism = Mechanism.PASSWORD,
        origin: Origin | None = None,
        acting_for: ActingFor | None = None,
    ) -> None:
        """Authenticate with a password or a bearer token (``secret``), first telling the
        upstream where the user's request came from (RFC 2971 ID), in the same round trip
        where no literal is needed.

        Passwords go as AUTHENTICATE PLAIN (UTF-8 safe) where offered, else LOGIN; bearer
        tokens as OAUTHBEARER (RFC 7628) or XOAUTH2. With ``acting_for``, ``username`` is a
        master user's, who logs in as ``acting_for.user`` (see :class:`ActingFor`).
        """
        if acting_for is not None:
            if mechanism is not Mechanism.PASSWORD:
                raise ValueError("a master user logs in with a password")
            command, replies = self._master_command(username, secret, acting_for)
        elif mechanism is Mechanism.BEARER:
            command, replies = self._bearer_command(username, secret)
        else:
            command, replies = self._password_command(username, secret)
        prelude = self._id_command(origin)
        if prelude is not None and _needs_continuation(self._wire(command, "x")):
            await self._send_id(prelude)
            prelude = None
        result = await self._authenticate(command, replies, prelude)
        if not self._take_capabilities(result.tagged):
            await self.refresh_capabilities()

    def _password_command(self, username: str, password: str) -> tuple[Command, list[Secret]]:
        if "AUTH=PLAIN" in self.capabilities:
            if "SASL-IR" in self.capabilities:
                return authenticate_plain_command(username, password), []
            initial = Secret(plain_initial_response(username, password))
            return Command("AUTHENTICATE", "PLAIN"), [initial]
        if "LOGINDISABLED" in self.capabilities:
            raise UpstreamUnavailable("upstream offers no usable login (LOGINDISABLED)")
        return login_command(username, password), []

    def _master_command(
        self, master: str, password: str, acting_for: ActingFor
    ) -> tuple[Command, list[Secret]]:
        """The separator form as the user's own password login would be sent (Dovecot takes
        ``user*master`` in LOGIN and in PLAIN alike); otherwise PLAIN with the user as
        authorization identity, which only SASL carries: without AUTH=PLAIN it cannot be."""
        if acting_for.separator:
            if acting_for.separator in acting_for.user:
                raise AuthenticationFailed("NO", None, "the user name holds the separator")
            joined = f"{acting_for.user}{acting_for.separator}{master}"
            return self._password_command(joined, password)
        if "AUTH=PLAIN" not in self.capabilities:
            raise AuthenticationFailed("NO", None, "the upstream offers no AUTHENTICATE PLAIN")
        if "SASL-IR" in self.capabilities:
            return authenticate_plain_command(master, password, acting_for.user), []
        initial = Secret(plain_initial_response(master, password, acting_for.user))
        return Command("AUTHENTICATE", "PLAIN"), [initial]

    def _bearer_command(self, username: str, token: str) -> tuple[Command, list[Secret]]:
        """OAUTHBEARER where offered, else XOAUTH2 (which needs a user name).

        On failure both send a challenge with an error document, which the client answers
        (RFC 7628 3.2.3: with a single 0x01; XOAUTH2: with an empty line) to get the NO.
        """
        user = username or None
        if "AUTH=OAUTHBEARER" in self.capabilities:
            mechanism, failure_reply = "OAUTHBEARER", "AQ=="
            initial = oauthbearer_initial_response(user, token)
        elif "AUTH=XOAUTH2" in self.capabilities and user is not None:
            mechanism, failure_reply = "XOAUTH2", ""
            initial = xoauth2_initial_response(user, token)
        else:
            raise AuthenticationFailed("NO", None, "the upstream takes no bearer tokens")
        if "SASL-IR" in self.capabilities:
            return authenticate_command(mechanism, initial), [Secret(failure_reply)]
        return Command("AUTHENTICATE", mechanism), [Secret(initial), Secret(failure_reply)]

    def _id_command(self, origin: Origin | None) -> Command | None:
        """RFC 2971 ID with Dovecot's ``x-originating-ip``/``-port``, which it honours from
        ``login_trusted_networks`` (and ignores otherwise); only where the server has ID."""
        if origin is None or "ID" not in self.capabilities:
            return None
        fields = {"x-originating-ip": origin.address}
        if origin.port is not None:
            fields["x-originating-port"] = str(origin.port)
        return id_command(fields)

    async def _send_id(self, command: Command) -> None:
        with contextlib.suppress(CommandFailed):  # ID only informs; a refusal changes nothing
            await self.execute(command, timeout=self.endpoint.connect_timeout)

    async def _authenticate(
        self, command: Command, replies: Sequence[Secret], prelude: Command | None
    ) -> Result:
        commands = (command,) if prelude is None else (prelude, command)

        async def run() -> list[Result]:
            if prelude is None:
                return [await self._run(command, replies)]
            # The server answers ID before it reads on (RFC 3501 5.5): a challenge is the login's.
            return await self._run_together((prelude, command), list(replies))

        # Logging in is part of connecting: it gets the connect timeout, not a command's.
        results = await self._exchange(commands, run, self.endpoint.connect_timeout, command.name)
        tagged = results[-1].tagged
        if tagged.status != "OK":
            code = tagged.code.name if tagged.code else None
            if code in TEMPORARY_CODES:
                raise UpstreamUnavailable(f"upstream cannot log in now ({code})")
            raise AuthenticationFailed(tagged.status, code, "authentication failed")
        return results[-1]

    def _reply(self, pending: list[Secret]) -> None:
        """Answer a server challenge ("+") with the next prepared response."""
        if not pending:
            raise ProtocolError("unexpected continuation request")
        self.writer.write(str(pending.pop(0).value).encode("ascii") + b"\r\n")

    async def refresh_capabilities(self) -> frozenset[str]:
        result = await self.execute(Command("CAPABILITY"))
        for response in result.data("CAPABILITY"):
            self.capabilities = parse_capabilities(response.values)
        return self.capabilities

    def _take_capabilities(self, response: Tagged | Untagged) -> bool:
        if response.code is not None and response.code.name == "CAPABILITY":
            self.capabilities = parse_capabilities(response.code.args)
            return True
        return False

    # -- commands -----------------------------------------------------------------------------

    async def execute(self, command: Command, *, timeout: float | None = None) -> Result:
        """Send ``command`` and collect its responses; a tagged NO/BAD raises CommandFailed."""

        async def run() -> list[Result]:
            return [await self._run(command, ())]

        [result] = await self._exchange((command,), run, timeout, command.name)
        if result.tagged.status != "OK":
            t = result.tagged
            raise CommandFailed(t.status, t.code.name if t.code else None, t.text)
        return result

    async def execute_pipelined(
        self, *commands: Command, timeout: float | None = None, check: bool = True
    ) -> list[Result]:
        """Send several commands at once and collect their responses (RFC 3501 5.5).

        One round trip instead of one per command. Only for commands whose untagged data
        need not be told apart (every result holds all of it), without synchronizing
        literals; a tagged NO/BAD of any raises CommandFailed once every response is read,
        unless ``check`` is off (the caller reads each status).
        """
        results = await self._exchange(
            commands, lambda: self._run_pipelined(commands), timeout, "pipelined commands"
        )
        for result in results if check else ():
            if result.tagged.status != "OK":
                t = result.tagged
                raise CommandFailed(t.status, t.code.name if t.code else None, t.text)
        return results

    async def _run_pipelined(self, commands: Sequence[Command]) -> list[Result]:
        return await self._run_together(commands, None)

    async def _run_together(
        self, commands: Sequence[Command], replies: list[Secret] | None
    ) -> list[Result]:
        """Send ``commands`` at once and read every completion: one round trip.

        ``replies`` answer the challenges of a login sent last; without them a challenge, and
        so a synchronizing literal, has no place among pipelined commands.
        """
        tags = []
        for command in commands:
            tag = self._next_tag()
            chunks = self._wire(command, tag)
            if replies is None and _needs_continuation(chunks):
                raise ValueError("a synchronizing literal cannot be pipelined")
            log.debug("upstream <- %s", command.redacted(tag))
            for chunk in chunks:
                self.writer.write(chunk.data if isinstance(chunk, Literal) else chunk)
            tags.append(tag)
        self.round_trips += 1
        await self.writer.drain()
        # RFC 3501 5.5: completions may come in any order (Dovecot completes a NOOP after a
        # LIST sent behind it), and untagged data cannot be told apart between commands.
        untagged: list[bytes] = []
        completed: dict[str, Tagged] = {}
        while len(completed) < len(tags):
            response = await self._next(untagged)
            if isinstance(response, Continuation) and replies is not None:
                self._reply(replies)
                continue
            if isinstance(response, Continuation) or response.tag not in tags:
                raise ProtocolError("unexpected response to pipelined commands")
            completed[response.tag] = response
        return [Result(untagged, completed[tag]) for tag in tags]

    async def _exchange(
        self,
        commands: Sequence[Command],
        run: Callable[[], Awaitable[list[Result]]],
        timeout: float | None,
        what: str,
    ) -> list[Result]:
        """Run ``run`` (which sends ``commands`` and reads their answers) alone on this
        connection, within the timeout, and report it to the endpoint's observer."""
        if self.broken:
            raise ConnectionLost("connection is broken")
        if self._idling:
            # RFC 2177 3: nothing but DONE may be sent during IDLE; waiting for the lock
            # would deadlock the task that holds the session.
            raise RuntimeError("a command was sent during IDLE")
        observer = self.endpoint.observer
        async with self._lock:
            started = time.perf_counter()
            try:
                results = await self._bounded(run, timeout, what)
            except BaseException as exc:
                if observer is not None:
                    for command in commands:
                        observer.command(verb(command), failure(exc))
                raise
            finally:
                self.last_used = time.monotonic()
        if observer is not None:
            observer.round_trip(round_trip_name(commands), time.perf_counter() - started)
            for command, result in zip(commands, results, strict=True):
                observer.command(verb(command), completion(result.tagged.status))
        return results

    async def _bounded(
        self, run: Callable[[], Awaitable[list[Result]]], timeout: float | None, what: str
    ) -> list[Result]:
        try:
            async with asyncio.timeout(timeout or self.endpoint.command_timeout):
                return await run()
        except TimeoutError:
            self.abort()
            raise CommandTimeout(f"{what} timed out") from None
        except OSError as exc:
            # A reset, a broken pipe or a TLS failure mid-command (Dovecot resets a login line
            # that is too long, and a session it ended with BYE): upstream trouble like an
            # orderly close, never a raw socket error above.
            self.abort()
            raise ConnectionLost(f"{what}: connection lost ({exc.strerror or exc})") from exc
        except BaseException:
            # Cancelled or failed half way: the stream position is unknown.
            self.abort()
            raise

    def _next_tag(self) -> str:
        self.commands_sent += 1
        return f"G{self.commands_sent}"

    def _wire(self, command: Command, tag: str) -> list[bytes | Literal]:
        return command.to_wire(
            tag,
            literal_plus="LITERAL+" in self.capabilities,
            literal_minus="LITERAL-" in self.capabilities,
        )

    async def _run(self, command: Command, replies: Sequence[Secret]) -> Result:
        """``replies`` answer server challenges ("+") that are not literal requests, in
        order, as AUTHENTICATE needs."""
        pending = list(replies)
        tag = self._next_tag()
        chunks = self._wire(command, tag)
        log.debug("upstream <- %s", command.redacted(tag))
        untagged: list[bytes] = []
        for chunk in chunks:
            if isinstance(chunk, Literal) and chunk.synchronizing:
                self.round_trips += 1
                await self._await_continuation(untagged)
            self.writer.write(chunk.data if isinstance(chunk, Literal) else chunk)
        self.round_trips += 1
        await self.writer.drain()
        while True:
            response = await self._next(untagged)
            if isinstance(response, Continuation):
                self._reply(pending)
                continue
            if response.tag != tag:
                raise ProtocolError(f"tagged response for unknown tag {response.tag!r}")
            return Result(untagged, response)

    async def _await_continuation(self, untagged: list[bytes]) -> None:
        """Wait for "+" before a synchronizing literal (RFC 3501 7.5)."""
        await self.writer.drain()
        response = await self._next(untagged)
        if isinstance(response, Tagged):
            # The server refused the command before its literal.
            code = response.code.name if response.code else None
            raise CommandFailed(response.status, code, response.text)

    async def _next(self, untagged: list[bytes]) -> Tagged | Continuation:
        """Read up to the next tagged or continuation response, collecting untagged ones."""
        while True:
            raw = await self._read_raw()
            if raw.startswith(b"* "):
                self._note_untagged(raw)
                untagged.append(raw)
                continue
            response = parse_response(raw)
            if isinstance(response, Untagged):
                raise ProtocolError(f"unexpected response {raw[:40]!r}")
            return response

    def _note_untagged(self, raw: bytes) -> None:
        """The two untagged responses that matter whatever the command: BYE and CAPABILITY."""
        head = raw[:13].upper()
        if head.startswith(b"* BYE"):
            self.broken = True
        elif head.startswith(b"* CAPABILITY "):
            response = parse_response(raw)
            if isinstance(response, Untagged):
                self.capabilities = parse_capabilities(response.values)

    async def _read_raw(self) -> bytes:
        while not self._pending:
            data = await self.reader.read(READ_SIZE)
            if not data:
                self.broken = True
                raise ConnectionLost("upstream closed the connection")
            self._quickack()
            self._pending.extend(self._framer.feed(data))
        return self._pending.popleft()

    async def _read_response(self) -> Tagged | Untagged | Continuation:
        return parse_response(await self._read_raw())

    # -- mailbox selection ---------------------------------------------------------------------

    async def select(
        self, name: str, *, read_only: bool = False, qresync: tuple[int, int] | None = None
    ) -> SelectState:
        """SELECT (or EXAMINE) ``name`` unless this connection has it selected already.

        With ``qresync`` (UIDVALIDITY and modseq, RFC 7162 3.2.5) the command is always
        sent, since the caller wants the VANISHED and FETCH responses it produces.
        """
        current = self.selected
        if current and current.name == name and current.read_only == read_only and not qresync:
            return current.state
        self.selected = None
        utf8 = "UTF8=ACCEPT" in self.enabled
        result = await self.execute(
            mailboxes.select(name, utf8=utf8, read_only=read_only, qresync=qresync)
        )
        state = fold_select(result.untagged, result.tagged)
        self.selected = Selected(name, read_only or state.read_only, state)
        return state

    async def execute_unselected(self, command: Command) -> Result:
        """``command`` with no mailbox selected: after UNSELECT in the same round trip where
        the server has UNSELECT (RFC 3691), else after :meth:`unselect`."""
        if self.selected is not None and "UNSELECT" in self.capabilities:
            self.selected = None
            return (await self.execute_pipelined(Command("UNSELECT"), command))[1]
        await self.unselect()
        return await self.execute(command)

    async def uid_search(self, *criteria: Criterion, charset: str | None = None) -> UidSet:
        """UIDs of the selected mailbox matching all of ``criteria``: compactly with ESEARCH
        (RFC 4731) where offered, else from SEARCH's list of numbers."""
        if "ESEARCH" in self.capabilities:
            result = await self.execute(uid_search(criteria, charset=charset, esearch=True))
            found = UidSet()
            for response in result.data("ESEARCH"):
                found |= parse_esearch(response).all or UidSet()
            return found
        result = await self.execute(uid_search(criteria, charset=charset))
        return UidSet.of(n for r in result.data("SEARCH") for n in parse_search(r).numbers)

    async def unselect(self) -> None:
        """Leave the selected mailbox without expunging anything.

        Needed before STATUS or LIST-STATUS: about the selected mailbox, servers answer from
        the session's own view (Dovecot says so with [CLIENTBUG]), which misses what other
        sessions changed since. CLOSE is safe only on a read-only selection (RFC 3501
        6.4.2: it expunges otherwise), so a read-write one is first re-opened read-only.
        """
        current = self.selected
        if current is None:
            return
        self.selected = None
        if "UNSELECT" in self.capabilities:
            await self.execute(Command("UNSELECT"))
            return
        if not current.read_only:
            utf8 = "UTF8=ACCEPT" in self.enabled
            await self.execute(
                mailboxes.select(current.name, utf8=utf8, read_only=True, qresync=None)
            )
        await self.execute(Command("CLOSE"))

    async def enable(self, *extensions: str) -> frozenset[str]:
        """ENABLE what the server offers of ``extensions`` (RFC 5161); returns what took."""
        command = self.enable_command(*extensions)
        if command is not None:
            self.note_enabled(await self.execute(command))
        return self.enabled

    def enable_command(self, *extensions: str) -> Command | None:
        """The ENABLE of what the server offers of ``extensions`` and has not enabled yet,
        for a caller that sends it with other commands (then :meth:`note_enabled`)."""
        wanted = [
            e
            for e in extensions
            if e.upper() in self.capabilities and e.upper() not in self.enabled
        ]
        return Command("ENABLE", *wanted) if wanted else None

    def note_enabled(self, result: Result) -> None:
        """Take in what an ENABLE's answer says took; a refused ENABLE raises CommandFailed."""
        if result.tagged.status != "OK":
            t = result.tagged
            raise CommandFailed(t.status, t.code.name if t.code else None, t.text)
        for response in result.data("ENABLED"):
            self.enabled |= parse_enabled(response)

    async def noop(self, timeout: float | None = None) -> None:
        await self.execute(Command("NOOP"), timeout=timeout)

    # -- IDLE (RFC 2177) -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def idle(self) -> AsyncIterator[IdleSession]:
        """IDLE for the duration of the block: ``async with conn.idle() as s: await s.next(t)``.

        Holds the connection throughout. Leaving the block sends DONE and reads the IDLE's
        completion within the command timeout; a cancelled block, or a completion that does
        not come in time, leaves the connection broken. Without the IDLE capability nothing
        is sent and CommandFailed is raised; so is a tagged NO/BAD refusing the IDLE.
        """
        if "IDLE" not in self.capabilities:
            raise CommandFailed("NO", "CANNOT", "the upstream does not offer IDLE")
        if self.broken:
            raise ConnectionLost("connection is broken")
        async with self._lock:
            self._idling = True
            try:
                tag, session = await self._start_idle()
                try:
                    yield session
                except Exception as exc:
                    if self.broken:  # the session lost the connection
                        self._report("IDLE", failure(exc))
                    else:
                        with contextlib.suppress(ImapError):
                            await self._finish_idle(tag)
                    raise
                except BaseException as exc:
                    # Cancelled in the middle of an IDLE: no time to say DONE politely.
                    self._report("IDLE", failure(exc))
                    self.abort()
                    raise
                finally:
                    session.end()
                if self.broken:  # the block took the session's ConnectionLost quietly
                    self._report("IDLE", "connection_lost")
                else:
                    await self._finish_idle(tag)
            finally:
                self._idling = False
                self.last_used = time.monotonic()

    async def _start_idle(self) -> tuple[str, IdleSession]:
        """Send IDLE and wait for "+"; untagged responses before it belong to the session."""
        tag = self._next_tag()
        log.debug("upstream <- %s", f"{tag} IDLE")
        early: list[bytes] = []
        overflowed = False
        try:
            async with asyncio.timeout(self.endpoint.command_timeout):
                self.writer.write(f"{tag} IDLE\r\n".encode("ascii"))
                self.round_trips += 1
                await self.writer.drain()
                while True:
                    raw = await self._read_raw()
                    if raw.startswith(b"* "):
                        self._note_untagged(raw)
                        if len(early) < COALESCE_AT:
                            early.append(raw)
                        else:
                            overflowed = True
                        continue
                    response = parse_response(raw)
                    if isinstance(response, Continuation):
                        break
                    if isinstance(response, Tagged) and response.tag == tag:
                        # Refused (e.g. BAD when IDLE is not allowed now): the stream is fine.
                        self._report("IDLE", completion(response.status))
                        code = response.code.name if response.code else None
                        raise CommandFailed(response.status, code, response.text)
                    raise ProtocolError("unexpected response to IDLE")
        except BaseException as exc:
            self._idle_failed(exc, "IDLE")
        session = IdleSession(
            self._read_raw,
            self._pending.__len__,
            self.abort,
            backlog=early,
            overflowed=overflowed,
            utf8="UTF8=ACCEPT" in self.enabled,
        )
        return tag, session

    async def _finish_idle(self, tag: str) -> None:
        """RFC 2177 3: DONE, then the IDLE's tagged completion. Untagged responses still on
        their way are read past (the caller resynchronizes after every IDLE anyway)."""
        log.debug("upstream <- %s", f"{tag} DONE")
        try:
            async with asyncio.timeout(self.endpoint.command_timeout):
                self.writer.write(b"DONE\r\n")
                self.round_trips += 1
                await self.writer.drain()
                while True:
                    raw = await self._read_raw()
                    if raw.startswith(b"* "):
                        self._note_untagged(raw)
                        continue
                    response = parse_response(raw)
                    if not isinstance(response, Tagged) or response.tag != tag:
                        raise ProtocolError("unexpected response to DONE")
                    break
        except BaseException as exc:
            self._idle_failed(exc, "DONE")
        self._report("IDLE", completion(response.status))
        if response.status != "OK":
            code = response.code.name if response.code else None
            raise CommandFailed(response.status, code, response.text)

    def _idle_failed(self, exc: BaseException, what: str) -> NoReturn:
        """Whatever interrupted IDLE or DONE (but a tagged refusal) leaves the stream in
        doubt: the connection is broken, and the error is one of gateway.imap.errors."""
        if isinstance(exc, CommandFailed):
            raise exc
        self.abort()
        if isinstance(exc, TimeoutError):  # before OSError, of which it is a subclass
            self._report("IDLE", "timeout")
            raise CommandTimeout(f"{what} timed out") from None
        self._report("IDLE", failure(exc))
        if isinstance(exc, OSError):
            raise ConnectionLost(f"{what}: connection lost ({exc.strerror or exc})") from exc
        raise exc

    def _report(self, command: str, outcome: str) -> None:
        if self.endpoint.observer is not None:
            self.endpoint.observer.command(command, outcome)

    # -- closing -------------------------------------------------------------------------------

    async def logout(self, timeout: float = 2.0) -> None:
        """Say goodbye politely; never raises, whatever state the connection is in."""
        if not self.broken and not self._idling:
            with contextlib.suppress(ImapError, OSError, asyncio.CancelledError):
                await self.execute(Command("LOGOUT"), timeout=timeout)
        self.broken = True
        self.abort()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(timeout):
                await self.writer.wait_closed()

    def abort(self) -> None:
        self.broken = True
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()

    @property
    def usable(self) -> bool:
        """False once broken or once the server closed its side (idle timeout, restart)."""
        peer_closed = self.reader.at_eof() or bool(getattr(self.reader, "_eof", False))
        return not self.broken and not peer_closed and not self.writer.transport.is_closing()


def _needs_continuation(chunks: Sequence[bytes | Literal]) -> bool:
    """Whether the command waits for "+" before a literal, so nothing may be sent with it."""
    return any(isinstance(chunk, Literal) and chunk.synchronizing for chunk in chunks)


async def greet(endpoint: Endpoint) -> frozenset[str]:
    """Connect, read the greeting (and start TLS where configured), LOGOUT: the capabilities
    the server offers before login. For probes, which log nobody in."""
    conn = await ImapConnection.open(endpoint)
    await conn.logout()
    return conn.capabilities

"""SIGTERM on a real gateway process: it stops accepting, lets the request in flight finish (or
cuts it after GATEWAY_SHUTDOWN_TIMEOUT_SECONDS), logs its upstream connections out and exits.

The gateway runs as ``python -m gateway serve``, configured only by GATEWAY_* variables as in
its container; a FaultProxy between it and Dovecot witnesses every LOGIN and LOGOUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import running_gateway, sending_settings, serving
from tests.faultproxy import FaultProxy
from tests.jmapclient import Jmap
from tests.servers import Dovecot, free_ports, make_data_dir
from tests.smtp_servers import Sink
from tests.translators.submitting import DOMAIN, draft, identity_id, request

MAIL = "urn:ietf:params:jmap:mail"
# Generous bounds for a loaded CI machine; nothing here measures time.
START_SECONDS = 30.0
EXIT_SECONDS = 30.0


class Gateway:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def exits_gracefully(self) -> bool:
        """Whether the process ends after a complete shutdown.

        uvicorn re-raises the SIGTERM it caught once its shutdown is done, so the process ends
        as SIGTERM ends it (exit status 143 in a container); the log says the shutdown ran.
        """
        code = await asyncio.to_thread(self.process.wait, EXIT_SECONDS)
        return code == -signal.SIGTERM and "Application shutdown complete" in self.log.read_text()


@asynccontextmanager
async def gateway_process(
    imap_url: str, redis_url: str, tmp_path: Path, **settings: str
) -> AsyncIterator[Gateway]:
    port, metrics_port = free_ports(2)
    env = {
        **os.environ,
        "GATEWAY_IMAP_URL": imap_url,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_METRICS_PORT": str(metrics_port),
        "GATEWAY_LOG_LEVEL": "info",
        **{f"GATEWAY_{name.upper()}": value for name, value in settings.items()},
    }
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    gateway = Gateway(process, port, log)
    try:
        await _wait_healthy(gateway)
        yield gateway
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def _wait_healthy(gateway: Gateway) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_SECONDS
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        while loop.time() < deadline:
            if gateway.process.poll() is not None:
                raise RuntimeError(f"gateway exited: {gateway.log.read_text()}")
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("gateway did not start")


async def refuses_connections(port: int) -> bool:
    """Whether a new connection to ``port`` is refused, within a few seconds."""
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return True
        writer.close()
        await asyncio.sleep(0.05)
    return False


def logins_and_logouts(proxy: FaultProxy) -> tuple[int, int]:
    verbs = [command.split(b" ")[1] for command in proxy.commands()]
    return verbs.count(b"LOGIN") + verbs.count(b"AUTHENTICATE"), verbs.count(b"LOGOUT")


class SlowBody:
    """An upload body sent in two halves; the second waits for :meth:`finish`."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self._finish = asyncio.Event()

    def finish(self) -> None:
        self._finish.set()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"a" * 5000
        self.started.set()
        await self._finish.wait()
        yield b"b" * 5000


@pytest.fixture
def user(dovecot: Dovecot) -> Iterator[str]:
    yield dovecot.fresh_user()


async def start_upload(
    gateway: Gateway, dovecot: Dovecot, user: str, body: SlowBody
) -> asyncio.Task[httpx.Response]:
    auth = httpx.BasicAuth(user, dovecot.users[user])
    http = httpx.AsyncClient(base_url=gateway.url, auth=auth, timeout=60)
    account = (await http.get("/jmap/session")).json()["primaryAccounts"][MAIL]

    async def upload() -> httpx.Response:
        try:
            return await http.post(
                f"/jmap/upload/{account}/",
                content=body,  # type: ignore[arg-type]
                headers={"content-type": "application/octet-stream"},
            )
        finally:
            await http.aclose()

    task = asyncio.create_task(upload())
    # Whichever comes first: the body is on its way, or the upload failed at once.
    started = asyncio.create_task(body.started.wait())
    await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
    started.cancel()
    assert not task.done(), task.result()
    await asyncio.sleep(0.2)  # the request is at the gateway, waiting for the rest
    return task


async def test_sigterm_lets_the_request_in_flight_finish(
    dovecot: Dovecot, redis_url: str, user: str, tmp_path: Path
) -> None:
    async with FaultProxy("127.0.0.1", dovecot.imap_port) as proxy:
        async with gateway_process(proxy.url, redis_url, tmp_path) as gateway:
            body = SlowBody()
            upload = await start_upload(gateway, dovecot, user, body)
            gateway.process.send_signal(signal.SIGTERM)
            assert await refuses_connections(gateway.port)
            assert not upload.done()
            body.finish()
            response = await upload
            assert await gateway.exits_gracefully()
        logins, logouts = logins_and_logouts(proxy)
    assert response.status_code == 201
    assert response.json()["size"] == 10000
    assert logins >= 1 and logouts == logins  # every upstream connection said LOGOUT
    assert dovecot.users[user] not in gateway.log.read_text()


async def test_sigterm_cuts_what_outlasts_the_shutdown_timeout(
    dovecot: Dovecot, redis_url: str, user: str, tmp_path: Path
) -> None:
    async with FaultProxy("127.0.0.1", dovecot.imap_port) as proxy:
        settings = {"shutdown_timeout_seconds": "1"}
        async with gateway_process(proxy.url, redis_url, tmp_path, **settings) as gateway:
            body = SlowBody()  # never finished
            upload = await start_upload(gateway, dovecot, user, body)
            gateway.process.send_signal(signal.SIGTERM)
            assert await gateway.exits_gracefully()
            body.finish()  # the client learns only now, when it sends the rest
            with pytest.raises(httpx.TransportError):
                await asyncio.wait_for(upload, EXIT_SECONDS)
        logins, logouts = logins_and_logouts(proxy)
    assert logins >= 1 and logouts == logins
    assert "timeout graceful shutdown exceeded" in gateway.log.read_text()


async def test_a_download_streaming_at_sigterm_arrives_whole(
    dovecot: Dovecot, redis_url: str, user: str, tmp_path: Path
) -> None:
    message = (
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: big\r\n"
        b"Content-Type: text/plain\r\n\r\n" + b"0123456789abcdef\r\n" * 400_000
    )  # 7.2 MB: several of the gateway's partial fetches
    with dovecot.client(user) as imap:
        imap.append("INBOX", "", None, message)
    auth = httpx.BasicAuth(user, dovecot.users[user])
    async with (
        gateway_process(dovecot.url, redis_url, tmp_path) as gateway,
        httpx.AsyncClient(base_url=gateway.url, auth=auth, timeout=60) as http,
    ):
        account = (await http.get("/jmap/session")).json()["primaryAccounts"][MAIL]
        calls = [
            ["Email/query", {"accountId": account}, "q"],
            [
                "Email/get",
                {
                    "accountId": account,
                    "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                    "properties": ["blobId"],
                },
                "g",
            ],
        ]
        answer = await http.post(
            "/jmap/api/",
            json={"using": ["urn:ietf:params:jmap:core", MAIL], "methodCalls": calls},
        )
        [email] = answer.json()["methodResponses"][1][1]["list"]
        path = f"/jmap/download/{account}/{email['blobId']}/big.eml?accept=message/rfc822"
        received = bytearray()
        async with http.stream("GET", path, headers={"accept-encoding": "identity"}) as download:
            assert download.status_code == 200
            chunks = download.aiter_raw()
            received += await anext(chunks)
            gateway.process.send_signal(signal.SIGTERM)
            async for chunk in chunks:
                received += chunk
        assert await gateway.exits_gracefully()
    assert bytes(received) == message


async def test_a_send_outlasting_the_shutdown_timeout_ends_and_is_recorded(
    dovecot: Dovecot, redis_url: str, user: str, tmp_path: Path
) -> None:
    """A write outlives the request uvicorn cancels at GATEWAY_SHUTDOWN_TIMEOUT_SECONDS; the
    pools and Redis close only after it: a message the SMTP server took is recorded, never
    "sent but not recorded" (its client, told nothing, would send it again)."""
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(
            contextlib.contextmanager(serving)(Sink(make_data_dir("jg-sink-"), slow_seconds=3.0))
        )
        settings = {
            "shutdown_timeout_seconds": "1",
            "smtp_url": sink.url,
            "mail_domain": DOMAIN,
        }
        async with (
            gateway_process(dovecot.url, redis_url, tmp_path, **settings) as gateway,
            httpx.AsyncClient(base_url=gateway.url, timeout=60) as http,
        ):
            jmap = await Jmap(http, user, dovecot.users[user]).start()
            mailboxes = await jmap.mailboxes()
            create = {"identityId": await identity_id(jmap), "emailId": "#d"}
            sending = asyncio.create_task(
                request(
                    jmap,
                    ("Email/set", {"create": {"d": draft(jmap, mailboxes, to=["slow-b@x.org"])}}),
                    ("EmailSubmission/set", {"create": {"s": create}}),
                )
            )
            for _ in range(1000):  # until the sink holds back its RCPT reply
                if sink.slowed or sending.done():
                    break
                await asyncio.sleep(0.01)
            assert sink.slowed == 1, sending
            gateway.process.send_signal(signal.SIGTERM)
            assert await gateway.exits_gracefully()
            # Cut at the shutdown timeout, before the send ended: uvicorn answers 500 or drops
            # the connection (the request helper asserts a 200).
            with pytest.raises((httpx.TransportError, AssertionError)):
                await sending
        assert "write(s) still running" not in gateway.log.read_text()
        assert len(sink.to("slow-b@x.org")) == 1
        again_settings = sending_settings(dovecot, sink.url, redis_url, mail_domain=DOMAIN)
        async with (
            running_gateway(again_settings) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            again = await Jmap(http, user, dovecot.users[user]).start()
            (found,) = await request(again, ("EmailSubmission/query", {}))
    assert len(found[1]["ids"]) == 1, found

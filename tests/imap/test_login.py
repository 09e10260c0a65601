"""Logging in upstream: the client's address told with ID first, and failures that stay
upstream trouble (never an unexpected error), against a real Dovecot."""

from __future__ import annotations

import pytest

from gateway.credentials import Origin
from gateway.imap.connection import ImapConnection
from gateway.imap.errors import AuthenticationFailed, ConnectionLost
from tests.faultproxy import FaultProxy
from tests.imap.upstream import endpoint
from tests.servers import LOOPBACK, Dovecot


def dovecot_log(dovecot: Dovecot) -> str:
    return (dovecot.root / "log" / "dovecot.log").read_text()


async def test_id_names_the_client_in_the_login_round_trip(trusting_dovecot: Dovecot) -> None:
    conn = await ImapConnection.open(endpoint(trusting_dovecot))
    sent = conn.round_trips
    await conn.login("alice", trusting_dovecot.users["alice"], origin=Origin("203.0.113.61", 40611))
    # RFC 3501 5.5: ID and AUTHENTICATE with SASL-IR go together; Dovecot answers CAPABILITY
    # in the login's completion, so nothing more is asked.
    assert conn.round_trips - sent == 1
    await conn.logout()
    # Dovecot honours x-originating-ip from login_trusted_networks: its log names the client.
    assert "user=<alice>, method=PLAIN, rip=203.0.113.61," in dovecot_log(trusting_dovecot)


async def test_id_goes_before_a_login_that_waits_for_a_literal(dovecot: Dovecot) -> None:
    """Without AUTH=PLAIN a non-ASCII password goes as a LOGIN literal, which waits for the
    server's "+": ID is sent first, on its own."""
    async with FaultProxy(LOOPBACK, dovecot.imap_port) as proxy:
        conn = await ImapConnection.open(endpoint(dovecot, port=proxy.port))
        conn.capabilities -= {"AUTH=PLAIN"}
        await conn.login("carol", dovecot.users["carol"], origin=Origin("198.51.100.62"))
        assert "CONDSTORE" in conn.capabilities  # logged in
        await conn.logout()
        verbs = [c.split(b" ", 2)[1:] for c in proxy.commands()]
    assert verbs[:2] == [[b"ID", b'("x-originating-ip" "198.51.100.62")'], [b"LOGIN", b"***"]]


async def test_a_refused_login_after_id_is_authentication_failed(dovecot: Dovecot) -> None:
    conn = await ImapConnection.open(endpoint(dovecot))
    with pytest.raises(AuthenticationFailed):
        await conn.login("alice", "not-her-password", origin=Origin("192.0.2.63"))
    await conn.logout()


async def test_a_login_line_the_server_resets_is_a_lost_connection(dovecot: Dovecot) -> None:
    """Dovecot resets a connection whose AUTHENTICATE line passes its limit (about 8 KB):
    that is upstream trouble (503), not an unexpected error (it was a 500)."""
    conn = await ImapConnection.open(endpoint(dovecot))
    with pytest.raises(ConnectionLost):
        await conn.login("alice", "x" * 20_000)
    assert not conn.usable

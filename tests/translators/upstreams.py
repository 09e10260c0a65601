"""Both upstreams for one test: the gateway in front of Dovecot and of Cyrus, each with a
plain IMAP client of the same user as the independent witness."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.cyrus import Cyrus
from tests.jmapclient import Jmap
from tests.mailcorpus import CORPUS, INTERNALDATES
from tests.servers import Dovecot


@dataclass
class Upstream:
    """One user's view: the gateway as a JMAP client and the server as a plain IMAP client."""

    server: Dovecot | Cyrus
    jmap: Jmap

    @property
    def user(self) -> str:
        return self.jmap.username


@pytest.fixture(params=["dovecot", "cyrus"])
def upstream(request: pytest.FixtureRequest) -> Upstream:
    if request.param == "dovecot":
        return Upstream(request.getfixturevalue("dovecot"), request.getfixturevalue("jmap"))
    return Upstream(request.getfixturevalue("cyrus"), request.getfixturevalue("cyrus_jmap"))


@pytest.fixture
def imap(upstream: Upstream) -> Iterator[imaplib.IMAP4]:
    client = upstream.server.client(upstream.user)
    yield client
    client.logout()


def ok(result: tuple[str, list[Any]]) -> list[Any]:
    assert result[0] == "OK", result
    return result[1]


def append(imap: imaplib.IMAP4, folder: str, key: str, flags: str = "") -> None:
    ok(imap.append(folder, f"({flags})", f'"{INTERNALDATES[key]}"', CORPUS[key]))


def uid_of(imap: imaplib.IMAP4, folder: str, key: str) -> str:
    """The UID of the corpus message ``key`` in ``folder`` (found by its own header)."""
    ok(imap.select(folder))
    data = ok(imap.uid("SEARCH", "HEADER", "X-Corpus-Key", key))
    uids = data[0].split()
    assert len(uids) == 1, (folder, key, uids)
    return str(uids[0].decode())

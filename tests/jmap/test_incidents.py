"""Every serverFail and serverPartialFail, of a method or of one object in a /set response,
is logged with its cause and an incident id that the client's description quotes too.

The dispatcher does it for every response, so handlers only raise or file SetErrors."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from gateway.jmap.capabilities import CORE
from gateway.jmap.dispatch import CallContext, MethodRegistry, process_request
from gateway.jmap.errors import MethodError, SetError
from gateway.jmap.protocol import Invocation, JsonObject, Request
from tests.faultproxy import FaultProxy
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import Mail
from tests.translators.proxied import jmap, proxy
from tests.translators.test_email_set import ids_by_key, mailbox_ids

__all__ = ["jmap", "proxy"]

INCIDENT = re.compile(r"incident ([0-9a-f]{12})")


class UpstreamRefused(Exception):
    """Stands for a lower layer's exception the app maps to serverFail."""


@dataclass
class Env:
    pass


registry: MethodRegistry[Env] = MethodRegistry()


@registry.method("Test/set", CORE, account_arg=None)
async def set_errors(ctx: CallContext[Env], args: JsonObject) -> JsonObject:
    refused = UpstreamRefused("NO [SERVERBUG] disk full in /var/mail")
    return {
        "created": None,
        "notCreated": {
            "a": SetError("serverFail", "the mail server refused the message", cause=refused),
            "b": SetError("tooLarge", "too big"),
        },
        # A handler that writes its SetErrors out itself is logged as well.
        "notDestroyed": {"c": SetError("serverFail", "the mail server kept the email").to_dict()},
    }


@registry.method("Test/partial", CORE, account_arg=None)
async def partial(ctx: CallContext[Env], args: JsonObject) -> JsonObject:
    try:
        raise ConnectionResetError("connection reset by imap.internal")
    except ConnectionResetError as exc:
        raise MethodError("serverPartialFail", "Part of the changes were made.") from exc


@registry.method("Test/refused", CORE, account_arg=None)
async def refused(ctx: CallContext[Env], args: JsonObject) -> JsonObject:
    raise UpstreamRefused("NO Mailbox Secret-Project is locked")


@registry.method("Test/stale", CORE, account_arg=None)
async def stale(ctx: CallContext[Env], args: JsonObject) -> JsonObject:
    raise MethodError("stateMismatch", "not now")


def map_error(exc: Exception) -> MethodError | None:
    if isinstance(exc, UpstreamRefused):
        return MethodError("serverFail", "The mail server refused the operation.")
    return None


async def run(*names: str) -> list[Any]:
    request = Request(
        frozenset({CORE}), [Invocation(n, {}, f"c{i}") for i, n in enumerate(names)], None
    )
    result = await process_request(request, registry, {}, Env(), "s", map_error=map_error)
    return orjson.loads(orjson.dumps(result))["methodResponses"]  # type: ignore[no-any-return]


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.ERROR, logger="gateway.jmap.incidents"):
        yield caplog


def incidents(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gateway.jmap.incidents"]


def incident_of(description: str) -> str:
    match = INCIDENT.search(description)
    assert match is not None, description
    return match.group(1)


def record_of(logged: pytest.LogCaptureFixture, incident: str) -> str:
    (found,) = [r for r in incidents(logged) if incident in r.getMessage()]
    text = found.getMessage()
    if found.exc_info:
        text += repr(found.exc_info[1])
    return text


async def test_set_errors_that_are_failures_are_logged_with_cause_and_incident(
    logged: pytest.LogCaptureFixture,
) -> None:
    ((_, response, _),) = await run("Test/set")
    failed = response["notCreated"]["a"]
    assert failed["type"] == "serverFail"
    assert failed["description"].startswith("the mail server refused the message (incident ")
    assert "disk full" not in str(response)
    line = record_of(logged, incident_of(failed["description"]))
    assert "Test/set" in line and "notCreated" in line and "'a'" in line
    assert "disk full in /var/mail" in line
    assert response["notCreated"]["b"] == {"type": "tooLarge", "description": "too big"}
    written_out = response["notDestroyed"]["c"]
    assert "kept the email" in record_of(logged, incident_of(written_out["description"]))
    assert len(incidents(logged)) == 2


async def test_method_failures_are_logged_with_cause_and_incident(
    logged: pytest.LogCaptureFixture,
) -> None:
    answers = await run("Test/partial", "Test/refused", "Test/stale")
    partial_error, refused_error, stale_error = (a[1] for a in answers)
    assert partial_error["type"] == "serverPartialFail"
    assert "imap.internal" in record_of(logged, incident_of(partial_error["description"]))
    assert refused_error["type"] == "serverFail"
    assert "Secret-Project" not in refused_error["description"]
    assert "Secret-Project is locked" in record_of(
        logged, incident_of(refused_error["description"])
    )
    # The client's own errors are not incidents.
    assert stale_error == {"type": "stateMismatch", "description": "not now"}
    assert len(incidents(logged)) == 2


async def test_a_real_set_failure_is_logged_with_the_upstream_cause(
    dovecot: Dovecot, jmap: Jmap, proxy: FaultProxy, logged: pytest.LogCaptureFixture
) -> None:
    mail = Mail(dovecot, jmap.username)
    mail.append("INBOX", "a")
    mail.close()
    ids = await ids_by_key(jmap)
    boxes = await mailbox_ids(jmap)
    proxy.cut(rb"UID MOVE", when="before", times=5)
    result = await jmap.call(
        "Email/set", update={ids["a"]: {"mailboxIds": {boxes["Archive"]: True}}}
    )
    failed = result["notUpdated"][ids["a"]]
    assert failed["type"] == "serverFail"
    line = record_of(logged, incident_of(failed["description"]))
    assert "Email/set" in line and ids["a"] in line
    assert "ConnectionLost" in line  # what cut the last attempt

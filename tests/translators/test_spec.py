"""The specs of the translator packages, collected into the method table and the Session."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.config import Settings
from gateway.env import RequestEnv
from gateway.jmap.capabilities import CORE, GATEWAY_PUSH, MAIL, SUBMISSION, WEBSOCKET
from gateway.jmap.dispatch import CallContext, Method
from gateway.jmap.errors import RequestError
from gateway.jmap.protocol import parse_request
from gateway.jmap.session import PersonalSession
from gateway.services import SPECS
from gateway.translators.core import core_limits
from gateway.translators.spec import Capability, Spec, collect

SETTINGS = Settings(
    imap_url="imap://127.0.0.1:1",
    redis_url="redis://127.0.0.1:1",
    public_url="https://jmap.example.com",
    max_mailboxes_per_email=7,
    max_size_attachments_per_email=1_000_000,
    max_objects_in_get=77,
)


async def identity_get(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    return {"accountId": arguments["accountId"], "state": "0", "list": [], "notFound": []}


IDENTITY = Spec(
    SUBMISSION,
    (Method("Identity/get", SUBMISSION, identity_get, writes=False),),
    declares=Capability(
        SUBMISSION,
        session=lambda settings, _: {},
        account=lambda settings, _: {"maxDelayedSend": 0, "submissionExtensions": {}},
    ),
)


def test_capability_objects_are_what_the_session_always_showed() -> None:
    # The exact octets, key order included, of the objects the Session carried before the
    # specs declared them (services.py built them by hand).
    catalog = collect(SPECS, SETTINGS)
    assert orjson.dumps(catalog.capabilities) == (
        b'{"urn:ietf:params:jmap:core":{"maxSizeUpload":50000000,"maxConcurrentUpload":4,'
        b'"maxSizeRequest":10000000,"maxConcurrentRequests":8,"maxCallsInRequest":32,'
        b'"maxObjectsInGet":77,"maxObjectsInSet":500,'
        b'"collationAlgorithms":["i;ascii-casemap","i;octet","i;unicode-casemap"]},'
        b'"urn:ietf:params:jmap:mail":{},'
        # RFC 8887 3, added with JMAP over WebSocket: wss because the public URL is https.
        b'"urn:ietf:params:jmap:websocket":{"url":"wss://jmap.example.com/jmap/ws",'
        b'"supportsPush":true},'
        # The gateway's own, added with push subscriptions: no master login configured.
        b'"urn:jmap-gateway:push":{"changesByOtherClients":false}}'
    )
    assert orjson.dumps(catalog.account_capabilities) == (
        b'{"urn:ietf:params:jmap:mail":{"maxMailboxesPerEmail":7,"maxMailboxDepth":null,'
        b'"maxSizeMailboxName":109,"maxSizeAttachmentsPerEmail":1000000,'
        b'"emailQuerySortOptions":["allInThreadHaveKeyword","from","hasKeyword","receivedAt",'
        b'"sentAt","size","someInThreadHaveKeyword","subject","to"],'
        b'"mayCreateTopLevelMailbox":true}}'
    )
    assert catalog.capabilities[CORE] == core_limits(SETTINGS).to_capability()


def test_every_method_of_every_package_is_in_the_table() -> None:
    catalog = collect(SPECS, SETTINGS)
    names = {method.name for spec in SPECS if spec.offered(SETTINGS) for method in spec.methods}
    assert {"Core/echo", "Blob/copy", "Mailbox/get", "Email/get", "Thread/get"} <= names
    assert all(catalog.registry.get(name) for name in names)
    assert catalog.registry.capabilities() == {CORE, MAIL}
    # Sending is offered only with an SMTP server: then every package's methods are in.
    assert catalog.registry.get("EmailSubmission/get") is None
    assert catalog.registry.get("Identity/get") is None
    sending = Settings(**{**SETTINGS.model_dump(), "smtp_url": "smtp://127.0.0.1:1"})
    everything = collect(SPECS, sending)
    assert all(everything.registry.get(m.name) for spec in SPECS for m in spec.methods)
    assert everything.registry.get("EmailSubmission/query") is not None
    assert everything.registry.get("Identity/set") is not None
    assert everything.registry.capabilities() == {CORE, MAIL, SUBMISSION}


def test_a_new_package_is_one_more_spec() -> None:
    catalog = collect((*SPECS, IDENTITY), SETTINGS)
    method = catalog.registry.get("Identity/get")
    assert method is not None and method.capability == SUBMISSION
    assert list(catalog.capabilities) == [CORE, MAIL, WEBSOCKET, GATEWAY_PUSH, SUBMISSION]
    session = PersonalSession(
        catalog.capabilities, catalog.account_capabilities, SETTINGS.base_url
    ).build("alice", "A1")
    assert session["accounts"]["A1"]["accountCapabilities"][SUBMISSION] == {
        "maxDelayedSend": 0,
        "submissionExtensions": {},
    }
    # RFC 8620 2: the user's account is primary for every capability it lists.
    assert session["primaryAccounts"] == {MAIL: "A1", SUBMISSION: "A1"}


def test_using_is_checked_against_the_collected_capabilities() -> None:
    body = orjson.dumps({"using": [CORE, SUBMISSION], "methodCalls": []})
    limits = core_limits(SETTINGS)
    with pytest.raises(RequestError) as refused:
        parse_request(body, "application/json", limits, collect(SPECS, SETTINGS).capabilities)
    assert refused.value.type == "unknownCapability"
    with_identity = collect((*SPECS, IDENTITY), SETTINGS).capabilities
    assert parse_request(body, "application/json", limits, with_identity).using == {
        CORE,
        SUBMISSION,
    }


def test_a_capability_is_declared_once() -> None:
    twice = Spec(MAIL, (), declares=Capability(MAIL, session=lambda settings, _: {}))
    with pytest.raises(ValueError, match="declared twice"):
        collect((*SPECS, twice), SETTINGS)


def test_a_capability_nobody_declares_is_refused_at_start_up() -> None:
    undeclared = Spec(SUBMISSION, IDENTITY.methods)
    with pytest.raises(ValueError, match="no package declares"):
        collect((*SPECS, undeclared), SETTINGS)


def test_a_spec_holds_only_methods_of_its_capability() -> None:
    with pytest.raises(ValueError, match="Identity/get needs"):
        Spec(MAIL, IDENTITY.methods)
    with pytest.raises(ValueError, match="declares"):
        Spec(MAIL, (), declares=IDENTITY.declares)


def test_a_method_in_two_packages_is_refused() -> None:
    again = Spec(MAIL, (SPECS[1].methods[0],))
    with pytest.raises(ValueError, match="already registered"):
        collect((*SPECS, again), SETTINGS)

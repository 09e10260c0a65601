"""Email/copy (RFC 8621 4.7, RFC 8620 5.4) and Blob/copy (RFC 8620 6.3).

The gateway serves one account per user, so Email/copy, which RFC 8620 5.4 allows only
between two accounts, can only answer a valid call with fromAccountNotFound; Blob/copy within
the caller's own account copies each blob to itself. What a second account would need is
checked on the handlers directly, with a call context that has two.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from gateway.jmap.capabilities import CORE, MAIL
from gateway.jmap.dispatch import AccountAccess, CallContext
from gateway.jmap.errors import MethodError
from gateway.translators.blob import blob_copy
from gateway.translators.email.copy import email_copy
from tests.conftest import fresh_jmap
from tests.jmapclient import Jmap
from tests.mailcorpus import CORPUS
from tests.servers import Dovecot
from tests.translators.mailseed import append

# Stands for the caller's own account id in the parametrized arguments below.
OWN = "own"


async def call(jmap: Jmap, name: str, **arguments: Any) -> tuple[str, dict[str, Any]]:
    (response,) = await jmap.request((name, arguments))
    return response[0], response[1]


def create(email_id: str = "Mnothere") -> dict[str, Any]:
    return {"c1": {"id": email_id, "mailboxIds": {"m1": True}}}


# --- Email/copy ------------------------------------------------------------------------------


async def test_email_copy_from_an_account_the_caller_does_not_have(jmap: Jmap) -> None:
    name, response = await call(jmap, "Email/copy", fromAccountId="aother", create=create())
    assert (name, response["type"]) == ("error", "fromAccountNotFound")


async def test_email_copy_from_another_users_account(dovecot: Dovecot, jmap: Jmap) -> None:
    other = await fresh_jmap(dovecot, jmap.http)
    name, response = await call(jmap, "Email/copy", fromAccountId=other.account_id, create=create())
    assert (name, response["type"]) == ("error", "fromAccountNotFound")


@pytest.mark.parametrize(
    "arguments",
    [
        # RFC 8620 5.4: accountId MUST be different to fromAccountId.
        {"fromAccountId": OWN, "create": create()},
        {"fromAccountId": "aother"},
        {"fromAccountId": "aother", "create": None},
        {"fromAccountId": "aother", "create": {"c1": "not an object"}},
        {"fromAccountId": "aother", "create": {"not an id!": {}}},
        {"create": create()},
        {"fromAccountId": "aother", "create": create(), "onSuccessDestroyOriginal": "yes"},
        {"fromAccountId": "aother", "create": create(), "ifInState": 3},
        {"fromAccountId": "aother", "create": create(), "colour": "blue"},
    ],
)
async def test_email_copy_invalid_arguments_come_before_account_errors(
    jmap: Jmap, arguments: dict[str, Any]
) -> None:
    if arguments.get("fromAccountId") == OWN:
        arguments = {**arguments, "fromAccountId": jmap.account_id}
    name, response = await call(jmap, "Email/copy", **arguments)
    assert (name, response["type"]) == ("error", "invalidArguments"), response


async def test_email_copy_to_an_account_the_caller_does_not_have(jmap: Jmap) -> None:
    name, response = await call(
        jmap, "Email/copy", accountId="aother", fromAccountId=jmap.account_id, create=create()
    )
    assert (name, response["type"]) == ("error", "accountNotFound")


# --- Blob/copy -------------------------------------------------------------------------------


async def test_blob_copy_within_the_account(jmap: Jmap, dovecot: Dovecot) -> None:
    append(dovecot, jmap.username, {"mixed_attachments": CORPUS["mixed_attachments"]})
    (stored,) = (await jmap.call("Email/get", ids=None, properties=["blobId", "attachments"]))[
        "list"
    ]
    uploaded = await jmap.upload(b"some octets")
    existing = [uploaded, stored["blobId"], stored["attachments"][0]["blobId"]]
    missing = ["Unothere", "Mnothere", stored["blobId"] + "x", "P" + stored["blobId"][1:] + "_9"]
    name, response = await call(
        jmap,
        "Blob/copy",
        fromAccountId=jmap.account_id,
        blobIds=[*existing, *missing, uploaded],
    )
    assert name == "Blob/copy"
    assert response == {
        "fromAccountId": jmap.account_id,
        "accountId": jmap.account_id,
        "copied": {blob_id: blob_id for blob_id in existing},
        "notCopied": {
            blob_id: {"type": "notFound", "description": "No such blob"} for blob_id in missing
        },
    }
    # The copies are the blobs themselves: still there, same octets.
    download = await jmap.http.get(f"/jmap/download/{jmap.account_id}/{uploaded}/x", auth=jmap.auth)
    assert download.content == b"some octets"


async def test_blob_copy_of_nothing_and_of_strangers(dovecot: Dovecot, jmap: Jmap) -> None:
    other = await fresh_jmap(dovecot, jmap.http)
    theirs = await other.upload(b"private")
    _, response = await call(jmap, "Blob/copy", fromAccountId=jmap.account_id, blobIds=[])
    assert (response["copied"], response["notCopied"]) == (None, None)
    _, response = await call(jmap, "Blob/copy", fromAccountId=jmap.account_id, blobIds=[theirs])
    assert response["copied"] is None and list(response["notCopied"]) == [theirs]
    name, response = await call(jmap, "Blob/copy", fromAccountId=other.account_id, blobIds=[theirs])
    assert (name, response["type"]) == ("error", "fromAccountNotFound")


@pytest.mark.parametrize(
    "arguments",
    [
        {"fromAccountId": "aother"},
        {"blobIds": ["Uabc"]},
        {"fromAccountId": "aother", "blobIds": "Uabc"},
        {"fromAccountId": "aother", "blobIds": ["not an id!"]},
        {"fromAccountId": "aother", "blobIds": [], "create": {}},
    ],
)
async def test_blob_copy_invalid_arguments_come_before_account_errors(
    jmap: Jmap, arguments: dict[str, Any]
) -> None:
    name, response = await call(jmap, "Blob/copy", **arguments)
    assert (name, response["type"]) == ("error", "invalidArguments"), response


async def test_blob_copy_needs_only_the_core_capability(
    http: httpx.AsyncClient, jmap: Jmap
) -> None:
    body = {
        "using": [CORE],
        "methodCalls": [
            [
                "Blob/copy",
                {"fromAccountId": jmap.account_id, "accountId": jmap.account_id, "blobIds": []},
                "c",
            ]
        ],
    }
    response = await http.post("/jmap/api/", json=body, auth=jmap.auth)
    assert response.json()["methodResponses"][0][0] == "Blob/copy"


# --- A second account, which the gateway never has today ---------------------------------------


def two_accounts() -> CallContext[Any]:
    """A context whose caller has two accounts; the env has what the handlers read first."""
    accounts = {
        account_id: AccountAccess(account_id, frozenset({MAIL}), read_only=False)
        for account_id in ("aone", "atwo")
    }
    limits = SimpleNamespace(max_objects_in_set=500)
    env = SimpleNamespace(
        services=SimpleNamespace(limits=limits), principal=SimpleNamespace(account_id="aone")
    )
    return CallContext("x", "c", frozenset({CORE, MAIL}), {}, accounts, accounts["aone"], env)


async def test_copies_between_two_accounts_are_refused_plainly() -> None:
    ctx = two_accounts()
    with pytest.raises(MethodError) as raised:
        await email_copy(ctx, {"fromAccountId": "atwo", "accountId": "aone", "create": create()})
    assert raised.value.type == "fromAccountNotSupportedByMethod"
    for pair in (("atwo", "aone"), ("aone", "atwo"), ("atwo", "atwo")):
        with pytest.raises(MethodError) as raised:
            await blob_copy(
                ctx, {"fromAccountId": pair[0], "accountId": pair[1], "blobIds": ["Uabc"]}
            )
        assert raised.value.type == "fromAccountNotSupportedByMethod"


async def test_blob_copy_of_more_blobs_than_max_objects_in_set(jmap: Jmap) -> None:
    blob_ids = ["Ux"] * 501
    _, response = await call(jmap, "Blob/copy", fromAccountId=jmap.account_id, blobIds=blob_ids)
    assert response["type"] == "requestTooLarge", response

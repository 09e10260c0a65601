"""Blobs a request reads whole are bounded: ``S`` blob ids nest at most three parts deep and are
read without recursion, and one request reads at most max_size_blobs_per_request octets of
blobs, however many ids name the same upload.

The hostile review: a 5 MB upload named through many ``S`` ids in one Email/set took 330 MiB
(each id read the upload again and kept its copy), and ``S`` ids nested 400 deep were a
RecursionError and a 500. The budget test counts the octets Redis sent the gateway.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
import redis

from gateway.translators.email.blob_ids import MAX_PART_NESTING
from tests.conftest import gateway_settings, running_gateway
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import ok
from tests.upstream_log import upstream_commands


def message(text: str, *attached: bytes, padding: int = 0) -> bytes:
    """A message with a text part, then each of ``attached`` as an .eml file of octets (the
    upstream does not look into those, so their parts have ``S`` ids), then padding."""
    msg = EmailMessage()
    msg["From"] = "ann@example.org"
    msg["Subject"] = text
    msg.set_content(text)
    for data in attached:
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename="m.eml")
    if padding:
        msg.add_attachment(b"p" * padding, maintype="application", subtype="octet-stream")
    return msg.as_bytes(policy=policy.SMTP)


def nested_s(source: str, part_ids: list[str]) -> str:
    for part_id in part_ids:
        source = f"S{source}_{part_id}"
    return source


async def download(jmap: Jmap, blob_id: str) -> httpx.Response:
    return await jmap.http.get(f"/jmap/download/{jmap.account_id}/{blob_id}/m.eml", auth=jmap.auth)


async def test_parts_nest_three_deep_and_no_deeper(jmap: Jmap) -> None:
    deepest = message("deepest")
    third = message("third", deepest)
    second = message("second", third)
    upload = await jmap.upload(message("first", second))
    # Part 2 of each message is the next one, as octets (base64, decoded on download).
    for depth, expected in enumerate((second, third, deepest), start=1):
        response = await download(jmap, nested_s(upload, ["2"] * depth))
        assert response.status_code == 200
        assert response.content == expected
    too_deep = nested_s(upload, ["2"] * MAX_PART_NESTING + ["1"])
    assert (await download(jmap, too_deep)).status_code == 404


async def test_parse_names_parts_only_while_they_can_be_downloaded(jmap: Jmap) -> None:
    deepest = message("deepest")
    upload = await jmap.upload(message("first", message("second", message("third", deepest))))
    two_deep = nested_s(upload, ["2", "2"])
    three_deep = nested_s(upload, ["2", "2", "2"])
    parsed = await jmap.call(
        "Email/parse", blobIds=[two_deep, three_deep], properties=["attachments"]
    )
    assert parsed["notParsable"] == [three_deep]
    (attachment,) = parsed["parsed"][two_deep]["attachments"]
    assert attachment["blobId"] == three_deep
    assert (await download(jmap, attachment["blobId"])).content == deepest


async def test_four_hundred_levels_are_no_blob_anywhere(jmap: Jmap) -> None:
    upload = await jmap.upload(message("only"))
    deep = nested_s(upload, ["1"] * 400)
    inbox = (await jmap.mailboxes())["Inbox"]["id"]
    create = {
        "mailboxIds": {inbox: True},
        "subject": "deep",
        "bodyStructure": {"type": "text/plain", "blobId": deep},
    }
    answers = await jmap.request(
        ("Email/set", {"create": {"k": create}}),
        ("Email/parse", {"blobIds": [deep]}),
        ("Blob/copy", {"fromAccountId": jmap.account_id, "blobIds": [deep]}),
        ("Email/import", {"emails": {"i": {"blobId": deep, "mailboxIds": {inbox: True}}}}),
    )
    assert answers[0][1]["notCreated"]["k"]["type"] == "blobNotFound"
    # Longer than an Id may be (RFC 8620 1.2: 255 octets): refused as an argument.
    assert [answers[1][1]["type"], answers[2][1]["type"]] == ["invalidArguments"] * 2
    assert answers[3][1]["notCreated"]["i"]["type"] == "invalidProperties"
    assert (await download(jmap, deep)).status_code == 404
    # As deep as an Id allows: still no blob.
    longest = nested_s(upload, ["1"] * ((255 - len(upload)) // 3))
    assert len(longest) <= 255
    answers = await jmap.request(
        ("Email/parse", {"blobIds": [longest]}),
        ("Blob/copy", {"fromAccountId": jmap.account_id, "blobIds": [longest]}),
    )
    assert answers[0][1]["notFound"] == [longest]
    assert answers[1][1]["notCopied"][longest]["type"] == "notFound"


BUDGET = 12_000_000
PADDING = 4_000_000


@pytest.fixture
async def budgeted(dovecot: Dovecot, redis_url: str) -> AsyncIterator[tuple[Jmap, str]]:
    settings = gateway_settings(dovecot.url, redis_url, max_size_blobs_per_request=BUDGET)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        user = dovecot.fresh_user()
        yield await Jmap(http, user, dovecot.users[user]).start(), redis_url


def octets_sent(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.info("stats")["total_net_output_bytes"])
    finally:
        client.close()


async def test_one_upload_named_many_times_is_read_within_the_budget(
    budgeted: tuple[Jmap, str],
) -> None:
    jmap, redis_url = budgeted
    notes = [message(f"note {n}") for n in range(8)]
    data = message("carrier", *notes, padding=PADDING)
    upload = await jmap.upload(data)
    inbox = (await jmap.mailboxes())["Inbox"]["id"]

    def create(n: int) -> dict[str, Any]:
        part = {"type": "message/rfc822", "blobId": f"S{upload}_{n + 2}", "name": "n.eml"}
        return {"mailboxIds": {inbox: True}, "subject": f"s{n}", "attachments": [part]}

    before = octets_sent(redis_url)
    result = await jmap.call("Email/set", create={f"k{n}": create(n) for n in range(8)})
    sent = octets_sent(redis_url) - before
    # Every S id reads the whole upload; the budget holds two readings.
    assert len(data) * 2 <= BUDGET < len(data) * 3
    assert sorted(result["created"]) == ["k0", "k1"]
    refused = result["notCreated"]
    assert sorted(refused) == [f"k{n}" for n in range(2, 8)]
    assert {error["type"] for error in refused.values()} == {"tooLarge"}
    # Without the budget, Redis sent the upload eight times (over 40 MB).
    assert sent < BUDGET + 1_000_000
    got = await jmap.call(
        "Email/get", ids=[result["created"]["k1"]["id"]], properties=["attachments"]
    )
    (attachment,) = got["list"][0]["attachments"]
    stored = await download(jmap, attachment["blobId"])
    assert message_from_bytes(stored.content)["Subject"] == "note 1"
    assert stored.content == notes[1]


async def test_blob_copy_reads_no_octets_to_know_a_blob_exists(
    dovecot: Dovecot, jmap: Jmap, caplog: pytest.LogCaptureFixture
) -> None:
    """Each id of a Blob/copy read the first megabyte of its message from the upstream: 500
    ids, 500 MB for one small call."""
    imap = dovecot.client(jmap.username)
    for n in range(5):
        ok(imap.append("INBOX", "", None, message(f"m{n}", b"attached", padding=300_000)))
    imap.logout()
    listed = await jmap.call("Email/get", ids=None, properties=["blobId", "attachments"])
    blobs = [e["blobId"] for e in listed["list"]]
    blobs += [part["blobId"] for e in listed["list"] for part in e["attachments"]]
    caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
    caplog.clear()
    copied = await jmap.call("Blob/copy", fromAccountId=jmap.account_id, blobIds=blobs)
    assert set(copied["copied"]) == set(blobs)
    sent = upstream_commands(caplog)
    assert not [command for command in sent if "PEEK[" in command], sent


async def test_a_blob_too_large_is_refused_before_it_is_fetched(
    dovecot: Dovecot, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = gateway_settings(dovecot.url, redis_url, max_size_attachments_per_email=10_000)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        user = dovecot.fresh_user()
        jmap = await Jmap(http, user, dovecot.users[user]).start()
        imap = dovecot.client(user)
        ok(imap.append("INBOX", "", None, message("big", padding=300_000)))
        imap.logout()
        (big,) = (await jmap.call("Email/get", ids=None, properties=["blobId"]))["list"]
        inbox = (await jmap.mailboxes())["Inbox"]["id"]
        part = {"type": "message/rfc822", "blobId": big["blobId"]}
        create = {"mailboxIds": {inbox: True}, "subject": "fwd", "attachments": [part]}
        caplog.set_level(logging.DEBUG, logger="gateway.imap.connection")
        caplog.clear()
        result = await jmap.call("Email/set", create={"k": create})
    assert result["notCreated"]["k"]["type"] == "tooLarge"
    sent = upstream_commands(caplog)
    assert not [command for command in sent if "PEEK[" in command], sent

"""Prometheus metrics on their own port: what a scrape reports after real work, and that no
label carries an account id, a user name or a mailbox name."""

from __future__ import annotations

import json

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import gateway_settings, running_gateway
from tests.faultproxy import FaultProxy
from tests.servers import Dovecot

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"

Samples = dict[str, list[tuple[dict[str, str], float]]]


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels``."""
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


async def test_a_scrape_reports_requests_calls_upstream_and_redis(
    dovecot: Dovecot, redis_url: str
) -> None:
    user = dovecot.fresh_user()
    async with FaultProxy("127.0.0.1", dovecot.imap_port) as proxy:
        settings = gateway_settings(proxy.url, redis_url)
        auth = httpx.BasicAuth(user, dovecot.users[user])
        async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
            session = (await http.get("/jmap/session", auth=auth)).json()
            account = session["primaryAccounts"][MAIL]
            calls = [
                ["Mailbox/get", {"accountId": account}, "a"],
                ["Mailbox/get", {"accountId": "not-mine"}, "b"],
                ["Secret/leak", {}, "c"],
            ]
            body = json.dumps({"using": [CORE, MAIL], "methodCalls": calls})
            response = await http.post(
                "/jmap/api/", content=body, auth=auth, headers={"content-type": "application/json"}
            )
            assert response.status_code == 200
            samples = await scrape(settings.metrics_port)
            upstream = proxy.commands()

    assert value(samples, "jmap_gateway_jmap_calls_total", method="Mailbox/get", outcome="ok") == 1
    assert (
        value(
            samples,
            "jmap_gateway_jmap_calls_total",
            method="Mailbox/get",
            outcome="accountNotFound",
        )
        == 1
    )
    # A method the gateway does not know is counted without its (client-chosen) name.
    assert (
        value(samples, "jmap_gateway_jmap_calls_total", method="unknown", outcome="unknownMethod")
        == 1
    )
    assert (
        value(samples, "jmap_gateway_jmap_call_duration_seconds_count", method="Mailbox/get") == 2
    )
    assert (
        value(
            samples,
            "jmap_gateway_http_requests_total",
            route="/jmap/api/",
            method="POST",
            status="200",
        )
        == 1
    )
    assert value(samples, "jmap_gateway_http_requests_total", route="/jmap/session") == 1

    # The upstream saw exactly the commands the metrics count (the proxy is the witness).
    sent = [c.split(b" ")[1].decode() for c in upstream]
    counted = value(samples, "jmap_gateway_imap_commands_total")
    assert counted == len(sent)
    assert value(samples, "jmap_gateway_imap_commands_total", command="LOGIN", outcome="ok") == (
        sent.count("LOGIN")
    )
    assert value(samples, "jmap_gateway_imap_connects_total", outcome="ok") >= 1
    assert value(samples, "jmap_gateway_imap_round_trip_seconds_count") >= 1
    assert value(samples, "jmap_gateway_imap_pool_connections", state="idle") >= 1
    assert value(samples, "jmap_gateway_imap_pool_max_connections") == settings.pool_max_total
    assert value(samples, "jmap_gateway_redis_command_duration_seconds_count") > 0

    labels = {v for found in samples.values() for labels, _ in found for v in labels.values()}
    for private in (user, account, "not-mine", "Secret/leak", "INBOX", "Inbox"):
        assert not any(private in label for label in labels), private


async def test_metrics_are_only_on_the_metrics_port(dovecot: Dovecot, redis_url: str) -> None:
    settings = gateway_settings(dovecot.url, redis_url)
    async with running_gateway(settings) as url, httpx.AsyncClient() as http:
        assert (await http.get(f"{url}/metrics")).status_code == 404
        other = await http.get(f"http://127.0.0.1:{settings.metrics_port}/jmap/session")
        assert other.status_code == 404
        assert (
            await http.get(f"http://127.0.0.1:{settings.metrics_port}/healthz")
        ).status_code == (404)
        scraped = await scrape(settings.metrics_port)
    # Only the API port's 404 is an HTTP request; neither the scrape nor the metrics port's
    # 404s are counted.
    assert scraped["jmap_gateway_http_requests_total"] == [
        ({"route": "unmatched", "method": "GET", "status": "404"}, 1.0)
    ]

"""The event-source URL's variables and the SSE framing (RFC 8620 7.3), without a server."""

from __future__ import annotations

import json

import pytest

from gateway.problems import HttpProblem
from gateway.push import PUSH_TYPES
from gateway.push.eventsource import (
    StreamParams,
    format_ping_event,
    format_state_event,
    parse_params,
    stream_params,
)
from tests.push.sse import SseParser

LIMITS = {"ping_min": 10, "ping_max": 300}
VALID = {"types": "*", "closeafter": "no", "ping": "0"}


def params(**query: str) -> StreamParams:
    return parse_params({**VALID, **query}, **LIMITS)


def refused(query: dict[str, str]) -> str:
    with pytest.raises(HttpProblem) as raised:
        parse_params(query, **LIMITS)
    assert raised.value.body["status"] == 400
    return str(raised.value.body["detail"])


@pytest.mark.parametrize("name", ["types", "closeafter", "ping"])
def test_every_variable_is_required(name: str) -> None:
    query = {k: v for k, v in VALID.items() if k != name}
    assert name in refused(query)


def test_types_star_means_every_type() -> None:
    assert params(types="*").types is None


def test_types_list_keeps_known_names_and_ignores_others() -> None:
    assert params(types="Email,Mailbox").types == {"Email", "Mailbox"}
    # Unknown to push (a CalendarEvent server's type, a typo, an empty element): left out.
    assert params(types="Email,CalendarEvent,,email").types == {"Email"}
    assert params(types=",".join(sorted(PUSH_TYPES))).types == PUSH_TYPES


def test_an_empty_types_list_asks_for_nothing() -> None:
    assert params(types="").types == frozenset()
    assert params(types="Nothing").types == frozenset()


@pytest.mark.parametrize(("value", "after_state"), [("state", True), ("no", False)])
def test_closeafter(value: str, after_state: bool) -> None:
    assert params(closeafter=value).close_after_state is after_state


@pytest.mark.parametrize("value", ["", "yes", "State", "state ", "0"])
def test_closeafter_other_values_are_refused(value: str) -> None:
    assert "closeafter" in refused({**VALID, "closeafter": value})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0),  # no ping events at all
        ("1", 10),  # raised to the minimum
        ("10", 10),
        ("42", 42),
        ("300", 300),
        ("301", 300),  # lowered to the maximum
        ("0042", 42),
        ("99999999999999999999999999999", 300),  # clamped without being read
    ],
)
def test_ping_is_clamped(value: str, seconds: int) -> None:
    assert params(ping=value).ping == seconds


@pytest.mark.parametrize("value", ["", "-1", "1.5", " 5", "5s", "1e3", "\u0663", "+5"])
def test_ping_must_be_a_non_negative_integer(value: str) -> None:
    assert "ping" in refused({**VALID, "ping": value})


def test_the_query_string_is_read_from_the_scope() -> None:
    scope = {"query_string": b"types=Email%2CMailbox&closeafter=state&ping=30"}
    assert stream_params(scope, **LIMITS) == StreamParams(
        frozenset({"Email", "Mailbox"}), close_after_state=True, ping=30
    )


def test_a_query_string_of_many_fields_is_refused() -> None:
    scope = {"query_string": b"&".join([b"types=*&closeafter=no&ping=0", *[b"x=1"] * 100])}
    with pytest.raises(HttpProblem) as raised:
        stream_params(scope, **LIMITS)
    assert raised.value.body["status"] == 400


def test_a_query_string_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(HttpProblem):
        stream_params({"query_string": b"types=%FF&closeafter=no&ping=0"}, **LIMITS)


def test_state_event_as_an_eventsource_reads_it() -> None:
    changed = {"a1": {"Email": "e1-41", "Mailbox": "e1-40"}}
    (event,) = SseParser().feed(format_state_event(changed, "tok-1").decode())
    assert event.type == "state"
    assert event.has_id and event.last_id == "tok-1"
    # RFC 8620 7.3: the data is the StateChange object of 7.1, "@type" included.
    assert json.loads(event.data) == {"@type": "StateChange", "changed": changed}


def test_ping_event_has_the_interval_and_no_id() -> None:
    parser = SseParser()
    parser.feed(format_state_event({"a1": {"Email": "e1-1"}}, "before").decode())
    (event,) = parser.feed(format_ping_event(42).decode())
    assert event.type == "ping"
    assert json.loads(event.data) == {"interval": 42}
    # RFC 8620 7.3: a ping MUST NOT set a new event id.
    assert not event.has_id and event.last_id == "before"

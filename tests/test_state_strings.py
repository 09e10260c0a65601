"""A state string is exactly what the server issued: the same number in other digits (Python's
``int`` reads Arabic-Indic, Devanagari, fullwidth... digits) or with a leading zero is not a
state of this server, so /changes and /queryChanges answer cannotCalculateChanges (RFC 8620
5.2), never changes since a state the client was not given."""

from __future__ import annotations

import pytest

from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailstate import Mail

# Each ASCII digit as another script writes it.
SCRIPTS = {
    "arabic-indic": 0x0660,
    "devanagari": 0x0966,
    "fullwidth": 0xFF10,
    "mathematical-bold": 0x1D7CE,
}


def respelled(state: str, zero: int) -> str:
    epoch, _, modseq = state.rpartition("-")
    return f"{epoch}-" + "".join(chr(zero + int(digit)) for digit in modseq)


@pytest.fixture
async def states(dovecot: Dovecot, jmap: Jmap) -> dict[str, str]:
    mail = Mail(dovecot, jmap.username)
    mail.append("INBOX", "a")
    mail.close()
    email = await jmap.call("Email/get", ids=None, properties=["id"])
    mailbox = await jmap.call("Mailbox/get", ids=None, properties=["id"])
    thread = await jmap.call("Thread/get", ids=None)
    return {"Email": email["state"], "Mailbox": mailbox["state"], "Thread": thread["state"]}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
async def test_other_digits_are_not_a_state(
    jmap: Jmap, states: dict[str, str], script: str
) -> None:
    calls = [
        (f"{kind}/changes", {"sinceState": respelled(s, SCRIPTS[script])})
        for kind, s in states.items()
    ]
    calls += [
        (f"{kind}/queryChanges", {"sinceQueryState": respelled(states[kind], SCRIPTS[script])})
        for kind in ("Email", "Mailbox")
    ]
    answers = await jmap.request(*calls)
    assert [a[1]["type"] for a in answers] == ["cannotCalculateChanges"] * len(calls)


async def test_the_state_as_issued_still_works(jmap: Jmap, states: dict[str, str]) -> None:
    for kind, state in states.items():
        answer = await jmap.call(f"{kind}/changes", sinceState=state)
        assert answer["oldState"] == state and answer["newState"] == state


@pytest.mark.parametrize(
    "spelling", ["{epoch}-0{modseq}", "{epoch}-+{modseq}", "{epoch}- {modseq}"]
)
async def test_other_spellings_of_the_number_are_not_a_state(
    jmap: Jmap, states: dict[str, str], spelling: str
) -> None:
    epoch, _, modseq = states["Email"].rpartition("-")
    since = spelling.format(epoch=epoch, modseq=modseq)
    ((_, answer, _),) = await jmap.request(("Email/changes", {"sinceState": since}))
    assert answer["type"] == "cannotCalculateChanges"

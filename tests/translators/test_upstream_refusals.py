"""The one table of IMAP response codes → SetError, per kind of upstream work.

The expected answers are those the three tables it replaced gave (Mailbox/set, storing a new
message, changing an Email), written out here code by code so a change to the table shows.
Codes Dovecot can be made to answer are also tested end to end (test_email_quota.py,
test_mailbox_set_refused.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.imap.errors import CommandFailed
from gateway.translators.upstream_refusals import REFUSALS, Work, refused

MAILBOX, NEW, CHANGE, IDENTITY = Work.MAILBOX, Work.NEW_MESSAGE, Work.EMAIL_CHANGE, Work.IDENTITY
QUOTA = {"type": "overQuota", "description": "the mail server's quota is exhausted"}
NOPERM = {"type": "forbidden", "description": "the mail server does not allow this"}
LIMIT = "the mail server's limit is reached"
REFUSED = {
    MAILBOX: {"type": "forbidden", "description": "the mail server refused"},
    NEW: {"type": "serverFail", "description": "the mail server refused the message"},
    CHANGE: {"type": "serverFail", "description": "the mail server refused the change"},
    IDENTITY: {"type": "serverFail", "description": "the mail server refused to keep the identity"},
}

EXPECTED: dict[str | None, dict[Work, dict[str, Any]]] = {
    "OVERQUOTA": {MAILBOX: QUOTA, NEW: QUOTA, CHANGE: QUOTA, IDENTITY: QUOTA},
    "NOPERM": {MAILBOX: NOPERM, NEW: NOPERM, CHANGE: NOPERM, IDENTITY: NOPERM},
    "LIMIT": {
        MAILBOX: {"type": "overQuota", "description": LIMIT},
        NEW: {"type": "tooLarge", "description": LIMIT},
        CHANGE: {"type": "tooManyKeywords", "description": LIMIT},
        IDENTITY: {"type": "overQuota", "description": LIMIT},
    },
    "ALREADYEXISTS": {
        MAILBOX: {
            "type": "invalidProperties",
            "description": "a mailbox with this name already exists",
            "properties": ["name"],
        },
        NEW: REFUSED[NEW],
        CHANGE: REFUSED[CHANGE],
        IDENTITY: REFUSED[IDENTITY],
    },
    "USEATTR": {
        MAILBOX: {
            "type": "invalidProperties",
            "description": "the mail server refuses this role here",
            "properties": ["role"],
        },
        NEW: REFUSED[NEW],
        CHANGE: REFUSED[CHANGE],
        IDENTITY: REFUSED[IDENTITY],
    },
    "NONEXISTENT": {
        MAILBOX: {"type": "notFound", "description": "the mailbox no longer exists upstream"},
        NEW: REFUSED[NEW],
        CHANGE: REFUSED[CHANGE],
        IDENTITY: REFUSED[IDENTITY],
    },
    "TOOBIG": {
        MAILBOX: REFUSED[MAILBOX],
        NEW: {"type": "tooLarge", "description": "the mail server refuses messages this large"},
        CHANGE: REFUSED[CHANGE],
        IDENTITY: REFUSED[IDENTITY],
    },
    "PARSE": {
        MAILBOX: REFUSED[MAILBOX],
        NEW: {"type": "invalidEmail", "description": "the mail server cannot parse the message"},
        CHANGE: REFUSED[CHANGE],
        IDENTITY: REFUSED[IDENTITY],
    },
    "METADATA": {
        MAILBOX: REFUSED[MAILBOX],
        NEW: REFUSED[NEW],
        CHANGE: REFUSED[CHANGE],
        IDENTITY: {
            "type": "overQuota",
            "description": "the mail server keeps no more identity data",
        },
    },
    # A code the table does not know, and none at all.
    "CANNOT": REFUSED,
    None: REFUSED,
}


def test_every_code_of_the_table_is_expected() -> None:
    assert set(REFUSALS) <= set(EXPECTED)


@pytest.mark.parametrize("work", list(Work))
@pytest.mark.parametrize("code", list(EXPECTED))
def test_code_means_per_kind_of_work(code: str | None, work: Work) -> None:
    exc = CommandFailed("NO", code, "Mailbox doesn't exist: Secret/Folder")
    error = refused(exc, work)
    assert error.to_dict() == EXPECTED[code][work]
    # The server's words may name mailboxes: the log may have them, the client never.
    assert "Secret" not in str(error.to_dict())


@pytest.mark.parametrize("work", [NEW, CHANGE])
def test_an_unexplained_refusal_keeps_its_cause_for_the_log(work: Work) -> None:
    exc = CommandFailed("NO", None, "Internal error occurred")
    assert refused(exc, work).cause is exc

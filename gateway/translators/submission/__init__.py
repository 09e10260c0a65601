"""Sending (RFC 8621 7): EmailSubmission over the operator's SMTP submission server.

This package declares the submission capability, which Identity's methods need too.
"""

from __future__ import annotations

from gateway.env import RequestEnv
from gateway.jmap.capabilities import SUBMISSION
from gateway.jmap.dispatch import Method
from gateway.translators.spec import Capability, Spec
from gateway.translators.submission.capability import (
    sending_configured,
    submission_account_capability,
)
from gateway.translators.submission.get import submission_changes, submission_get
from gateway.translators.submission.query import submission_query, submission_query_changes
from gateway.translators.submission.set import email_submission_set

METHODS: tuple[Method[RequestEnv], ...] = (
    Method("EmailSubmission/get", SUBMISSION, submission_get, writes=False),
    Method("EmailSubmission/changes", SUBMISSION, submission_changes, writes=False),
    Method("EmailSubmission/query", SUBMISSION, submission_query, writes=False),
    Method("EmailSubmission/queryChanges", SUBMISSION, submission_query_changes, writes=False),
    Method("EmailSubmission/set", SUBMISSION, email_submission_set, writes=True),
)


# RFC 8621 1.3.2: the Session-level submission capability object is empty.
SPEC = Spec(
    SUBMISSION,
    METHODS,
    declares=Capability(
        SUBMISSION, session=lambda settings, _: {}, account=submission_account_capability
    ),
    offered=sending_configured,
)

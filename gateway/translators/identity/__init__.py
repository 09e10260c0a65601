"""Identity methods (RFC 8621 6): the addresses a user sends from.

They need the submission capability (RFC 8621 6), which the submission package declares; like
it they exist only where the operator names an SMTP server. Other packages read identities
through :mod:`gateway.translators.identity.lookup`.
"""

from __future__ import annotations

from gateway.env import RequestEnv
from gateway.jmap.capabilities import SUBMISSION
from gateway.jmap.dispatch import Method
from gateway.translators.identity.get import identity_changes, identity_get
from gateway.translators.identity.set import identity_set
from gateway.translators.spec import Spec
from gateway.translators.submission.capability import sending_configured

METHODS: tuple[Method[RequestEnv], ...] = (
    Method("Identity/get", SUBMISSION, identity_get, writes=False),
    Method("Identity/changes", SUBMISSION, identity_changes, writes=False),
    Method("Identity/set", SUBMISSION, identity_set, writes=True),
)

SPEC = Spec(SUBMISSION, METHODS, offered=sending_configured)

"""The submission capability's account object (RFC 8621 1.3.2), from what EHLO said.

``submissionExtensions`` is the submission server's EHLO answer minus what only the gateway's
own conversation with it uses (see :data:`gateway.smtp.extensions.TRANSPORT_ONLY`): the
extensions a client may ask for through the envelope's parameters. ``maxDelayedSend`` is 0
unless the gateway can send without the user present (a service account, or a relay that
trusts it); holding a message the user's own credentials would have to send later is never
offered, because the gateway keeps no passwords.
"""

from __future__ import annotations

from gateway.config import Settings
from gateway.jmap.protocol import JsonObject
from gateway.smtp.extensions import Extensions
from gateway.translators.spec import Discovered


def sending_configured(settings: Settings) -> bool:
    """Sending exists only where the operator names an SMTP submission server."""
    return settings.smtp is not None


def max_delayed_send(settings: Settings, own_hold: bool, extensions: Extensions | None) -> int:
    """RFC 8621 1.3.2 maxDelayedSend, the one computation both the capability and a create's
    check (hold.py) use: the gateway's own hold (``own_hold``) up to
    GATEWAY_MAX_DELAYED_SEND_SECONDS, and the server's FUTURERELEASE interval within the same
    setting where its EHLO advertised it."""
    longest = settings.max_delayed_send_seconds
    delay = longest if own_hold else 0
    release = extensions.future_release if extensions is not None else None
    if release is not None:
        # RFC 4865 3: the server holds messages itself, up to its interval, with the user's
        # own credentials at submission time.
        delay = max(delay, min(longest, release))
    return delay


def submission_account_capability(settings: Settings, discovered: Discovered) -> JsonObject:
    """RFC 8621 1.3.2: the submission capability of a user's own account."""
    extensions = discovered.smtp_extensions
    return {
        "maxDelayedSend": max_delayed_send(settings, discovered.delayed_send, extensions),
        "submissionExtensions": extensions.as_jmap() if extensions is not None else {},
    }


def delayed_send_possible(settings: Settings) -> bool:
    """Whether a message can be sent with nobody logged in: a service account that may send
    as users, or no AUTH at all; and a delay allowed at all."""
    if settings.max_delayed_send_seconds <= 0:
        return False
    return settings.smtp_service_username is not None or settings.smtp_auth == "none"

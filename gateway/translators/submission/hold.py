"""Delayed send (RFC 8621 7, RFC 4865 HOLDFOR/HOLDUNTIL) and its undo.

A client asks for a later send with HOLDFOR or HOLDUNTIL on the envelope's mailFrom (create.py
reads them into ``Prepared.hold_until``). Two ways to honour it:

- **The submission server's FUTURERELEASE** (RFC 4865), when its EHLO advertises it: the
  message is handed over now, with the user's own login, carrying HOLDUNTIL, and the server
  releases it. The gateway has no way to take it back (RFC 4865 has no cancel over SMTP), so
  the submission is ``final`` at once (RFC 8621 7: "final: ... no longer possible to cancel"),
  with ``sendAt`` the release time (RFC 8621 7: with FUTURERELEASE, sendAt "MUST be the time
  when the server will release the message").
- **The gateway's own hold**, when the operator gave it a way to send without the user
  (``Services.background_authorization``: a service account acting for users, or a relay
  trusting the gateway): the prepared octets and envelope are kept in Redis and the delayed
  sender (delayed.py) sends them at ``sendAt``. The submission stays ``pending`` until then
  and can be canceled until a replica claims it; after that a cancel gets ``cannotUnsend``.

With neither, delayed sending is off: maxDelayedSend is 0 and a future sendAt is refused with
``forbiddenToSend``. A hold further ahead than maxDelayedSend is ``invalidProperties`` on the
envelope (the parameter is out of the range the server announced). A sendAt already past is
sent now.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from gateway.cache.held import HeldMessage
from gateway.cache.submissions import StoreContended, SubmissionRecord, TooManySubmissions
from gateway.config import Settings
from gateway.env import RequestEnv
from gateway.jmap.errors import SetError
from gateway.jmap.standard import InvalidValue, as_utc_date
from gateway.smtp.connection import Authorization
from gateway.smtp.envelope import Envelope
from gateway.smtp.extensions import Extensions
from gateway.smtp.sender import SmtpSender
from gateway.translators.submission.capability import delayed_send_possible, max_delayed_send
from gateway.translators.submission.create import Prepared
from gateway.translators.submission.delayed import DelayedSender, envelope_data
from gateway.translators.submission.deliver import deliver, utc_date

log = logging.getLogger(__name__)

FUTURERELEASE = "FUTURERELEASE"


class Services(Protocol):
    """What of gateway.services.Services delayed sending reads (translators do not import
    the wiring)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def smtp(self) -> SmtpSender | None: ...
    @property
    def smtp_extensions(self) -> Extensions: ...
    @property
    def delayed(self) -> DelayedSender | None: ...
    def background_authorization(self, username: str) -> Authorization | None: ...


NOT_CONFIGURED = "delayed sending is not configured on this server"


def longest_hold(services: Services) -> int:
    """RFC 8621 1.3.2 maxDelayedSend as the capability shows it, for this process's sender."""
    if services.smtp is None:
        return 0
    return max_delayed_send(services.settings, _own_hold(services), services.smtp_extensions)


def _own_hold(services: Services) -> bool:
    return services.delayed is not None and delayed_send_possible(services.settings)


def hold_available(services: Services) -> bool:
    """FUTURERELEASE advertised, or the gateway's own hold possible."""
    return longest_hold(services) > 0


async def hold(
    env: RequestEnv, prepared: Prepared, send_at: datetime
) -> SubmissionRecord | SetError:
    """Send ``prepared`` at ``send_at``: handed to the server's FUTURERELEASE (``final``), or
    kept by the gateway (``pending``); now when ``send_at`` is past."""
    services = env.services
    delay = send_at.timestamp() - time.time()
    if delay <= 0:
        return await deliver(env, prepared)
    if not hold_available(services):
        return SetError("forbiddenToSend", NOT_CONFIGURED)
    longest = longest_hold(services)
    if delay > longest:
        return SetError.invalid_properties(
            ["envelope"], f"envelope: the longest delay this server allows is {longest} seconds"
        )
    if _server_holds(services, delay, send_at):
        return await _future_release(env, prepared, send_at)
    if not _own_hold(services):
        return SetError.invalid_properties(
            ["envelope"], "envelope: the submission server does not hold messages until then"
        )
    return await _keep(env, prepared, send_at)


def _server_holds(services: Services, delay: float, send_at: datetime) -> bool:
    """Whether FUTURERELEASE takes this hold: within its interval and the gateway's maximum,
    and not past its latest date-time (RFC 4865 3: the second parameter)."""
    extensions = services.smtp_extensions
    release = extensions.future_release
    if release is None or delay > min(release, services.settings.max_delayed_send_seconds):
        return False
    values = extensions.keywords.get(FUTURERELEASE, ())
    if len(values) < 2:
        return True
    try:
        latest = as_utc_date(values[1])
    except InvalidValue:
        return True  # a malformed limit is not one; the server's reply will say
    return send_at <= latest


async def _future_release(
    env: RequestEnv, prepared: Prepared, send_at: datetime
) -> SubmissionRecord | SetError:
    """RFC 4865: the server holds it; HOLDUNTIL names the moment, whatever the transit time."""
    wire = prepared.envelope
    envelope = Envelope(
        wire.mail_from, {**wire.parameters, "HOLDUNTIL": utc_date(send_at)}, wire.recipients
    )
    return await deliver(env, replace(prepared, envelope=envelope), release=send_at)


async def _keep(
    env: RequestEnv, prepared: Prepared, send_at: datetime
) -> SubmissionRecord | SetError:
    """The gateway's hold: entry (tentative), octets, record, then the entry confirmed; a
    failure on the way takes back what was done, and a crash on the way leaves an unconfirmed
    entry that the delayed sender cleans up (cache.schedule)."""
    services = env.services
    delayed = services.delayed
    username = env.principal.username
    auth = services.background_authorization(username)
    if delayed is None or auth is None:
        return SetError("forbiddenToSend", NOT_CONFIGURED)
    if auth.credentials is not None and not username:
        # A service account acting for nobody would send as itself: a token that names no
        # user cannot have its mail sent later.
        return SetError("forbiddenToSend", "delayed sending needs a login that names a user")
    schedule = delayed.schedule
    account_id = env.principal.account_id
    record = replace(
        prepared.record, undo_status="pending", send_at=utc_date(send_at), delivery_status=None
    )
    await schedule.add(account_id, record.id, username)
    try:
        kept = await env.index.held.keep(
            record.id, HeldMessage(envelope_data(prepared.envelope), prepared.message)
        )
        if kept != "kept":
            await schedule.withdraw(account_id, record.id)
            return _over_quota(kept)
        await env.index.submissions.create(record)
    except (TooManySubmissions, StoreContended):
        await _take_back(env, record.id)
        return SetError("overQuota", "this account has too many submissions")
    except BaseException:
        await _take_back(env, record.id)
        raise
    await schedule.release_at(account_id, record.id, int(send_at.timestamp() * 1000))
    delayed.wake()
    return record


def _over_quota(kept: str) -> SetError:
    if kept == "tooMany":
        return SetError("overQuota", "this account holds as many delayed submissions as allowed")
    return SetError("overQuota", "this account's delayed submissions take all the room allowed")


async def _take_back(env: RequestEnv, submission_id: str) -> None:
    delayed = env.services.delayed
    if delayed is not None:
        await delayed.schedule.withdraw(env.principal.account_id, submission_id)
    await env.index.held.drop(submission_id)


async def cancel(env: RequestEnv, record: SubmissionRecord) -> SubmissionRecord | SetError:
    """RFC 8621 7: pending -> canceled while no replica has claimed it; else cannotUnsend."""
    if record.undo_status == "canceled":
        return record
    delayed = env.services.delayed
    if record.undo_status != "pending" or delayed is None:
        return SetError("cannotUnsend", "the message has been sent")
    account_id = env.principal.account_id
    answer = await delayed.schedule.cancel(account_id, record.id)
    if answer != "canceled":
        return SetError("cannotUnsend", "the message is being sent or was sent")
    canceled = replace(record, undo_status="canceled", finished_at=time.time())
    if not await env.index.submissions.replace(canceled, expect="pending"):
        current = (await env.index.submissions.get([record.id])).get(record.id)
        if current is None or current.undo_status != "canceled":
            return SetError("cannotUnsend", "the submission changed meanwhile")
        canceled = current
    await env.index.held.drop(record.id)
    await delayed.schedule.forget(account_id, record.id)
    return canceled

"""Email/set (RFC 8621 4.6): drafts APPENDed, keywords STOREd, mailboxes by COPY/MOVE/EXPUNGE.

Creates run first, then updates and destroys together as one plan (gateway.translators.email
.placement), carried out folder by folder. The index follows at once: flag changes are
written from the upstream's own answers to the STOREs, and anything that adds or removes
copies is read back by a catch-up before the response, so Email/get, the /changes methods
and Mailbox counts of every replica see the change.

Every object's result is decided by what the upstream holds afterwards, never by what the
gateway meant to do. When the connection breaks half way, a new one catches up and the
objects not yet as asked are planned again from what is really there (the plan never copies
to a folder that already has the Email, so nothing is duplicated); after a second break
a last connection only looks. An object still not as asked is reported in notUpdated or
notDestroyed with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.cache.emails import EmailRecord, EmailStore, FolderMark
from gateway.cache.locks import LockTimeout
from gateway.env import RequestEnv
from gateway.imap.errors import CommandFailed, ImapError
from gateway.jmap.dispatch import CallContext
from gateway.jmap.errors import MethodError, SetError
from gateway.jmap.standard import check_if_in_state, parse_set
from gateway.sync.index_writer import IndexWriter
from gateway.translators.email.creation import create_emails, selectable_mailbox
from gateway.translators.email.folder_work import Outcome, carry_out
from gateway.translators.email.patch import EmailPatch, parse_patch
from gateway.translators.email.placement import (
    Placed,
    Plan,
    Target,
    plan_destroy,
    plan_update,
    target_of,
)
from gateway.translators.email.store_proof import moved_mark
from gateway.translators.mailbox.view import MailboxView, mailbox_view

log = logging.getLogger(__name__)

# Attempts that change mail; one more only looks at the outcome.
ATTEMPTS = 2
LOST = "the connection to the mail server was lost before the change could be confirmed"
# Flag changes are written to the index this many copies at a time, as the sync writes its
# pages: one index script never holds Redis long, whatever maxObjectsInSet allows.
FLAG_PAGE = 500


@dataclass
class _Pending:
    """Updates and destroys not decided yet, by email id (with the key the client used)."""

    updates: dict[str, tuple[str, EmailPatch]] = field(default_factory=dict)
    destroys: dict[str, str] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)
    updated: dict[str, None] = field(default_factory=dict)
    not_updated: dict[str, SetError] = field(default_factory=dict)
    destroyed: list[str] = field(default_factory=list)
    not_destroyed: dict[str, SetError] = field(default_factory=dict)
    touched: bool = False
    # Why the last attempt was cut short, the cause of any object left undecided.
    lost: Exception | None = None

    def ids(self) -> list[str]:
        return [*self.updates, *self.destroys]

    def fail(self, email_id: str, error: SetError) -> None:
        if email_id in self.updates:
            self.not_updated[self.updates.pop(email_id)[0]] = error
        if email_id in self.destroys:
            self.not_destroyed[self.destroys.pop(email_id)] = error


async def email_set(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    env = ctx.env
    args = parse_set(arguments, env.services.limits.max_objects_in_set)
    response: dict[str, Any] = {"accountId": args.account_id}
    await env.catch_up()
    store = env.index.emails
    state = (await store.snapshot(()))[1]
    check_if_in_state(args.if_in_state, state)
    response["oldState"] = state
    created, not_created = await create_emails(ctx, args.create or {})
    pending = _Pending(touched=bool(created))
    view = await mailbox_view(env)
    _resolve(ctx, view, args.update or {}, args.destroy or [], pending)
    await _update_and_destroy(env, store, pending, view)
    response.update(
        {
            "newState": (await store.snapshot(()))[1],
            "created": created or None,
            "notCreated": _errors(not_created),
            "updated": pending.updated or None,
            "notUpdated": _errors(pending.not_updated),
            "destroyed": pending.destroyed or None,
            "notDestroyed": _errors(pending.not_destroyed),
        }
    )
    return response


def _errors(errors: Mapping[str, SetError]) -> dict[str, SetError] | None:
    """The SetErrors as they are: the dispatcher writes them out and logs failures with
    their cause (gateway.jmap.incidents)."""
    return dict(errors) or None


def _resolve(
    ctx: CallContext[RequestEnv],
    view: MailboxView,
    update: Mapping[str, dict[str, Any]],
    destroy: list[str],
    pending: _Pending,
) -> None:
    """Map the client's keys (ids or #creationIds) to email ids and parse the patches.

    Clients send one patch for many emails (mark these 500 read): a patch written alike is
    parsed once (its form with each value's type, so ``1`` never passes for ``true``)."""
    parsed_forms: dict[tuple[tuple[str, type, Any], ...], EmailPatch] = {}
    for key in destroy:
        email_id = _email_id(ctx, key)
        if email_id is None:
            pending.not_destroyed[key] = SetError("notFound", f"no email {key}")
        else:
            pending.destroys.setdefault(email_id, key)
    for key, patch in update.items():
        email_id = _email_id(ctx, key)
        if email_id is None:
            pending.not_updated[key] = SetError("notFound", f"no email {key}")
        elif email_id in pending.destroys:
            # RFC 8620 5.3: an update of a record destroyed in the same call.
            pending.not_updated[key] = SetError("willDestroy", "the email is destroyed")
        else:
            form = _form(patch)
            parsed = parsed_forms.get(form) if form is not None else None
            if parsed is None:
                try:
                    parsed = parse_patch(patch, lambda m: selectable_mailbox(ctx, view, m))
                except SetError as error:
                    pending.not_updated[key] = error
                    continue
                if form is not None:
                    parsed_forms[form] = parsed
            pending.updates[email_id] = (key, parsed)


def _form(patch: Mapping[str, Any]) -> tuple[tuple[str, type, Any], ...] | None:
    """A patch as a hashable key, or None when a value is not hashable (a whole object)."""
    form = tuple((path, type(value), value) for path, value in patch.items())
    try:
        hash(form)
    except TypeError:
        return None
    return form


def _email_id(ctx: CallContext[RequestEnv], key: str) -> str | None:
    return ctx.created_ids.get(key[1:]) if key.startswith("#") else key


async def _update_and_destroy(
    env: RequestEnv, store: EmailStore, pending: _Pending, view: MailboxView
) -> None:
    """``view``: the mailboxes as this request read them after its catch-up."""
    for attempt in range(ATTEMPTS + 1):
        if not pending.ids():
            return
        outcome = Outcome()
        try:
            # A catch-up this request already made (the sync interval 0, or creates read
            # back) is as fresh as one more would be.
            asked = env.caught_up.asked_upstream
            fresh = attempt > 0 or (_needs_fresh(pending) and not asked)
            if fresh:
                view = await mailbox_view(env, fresh=True)
            if attempt == ATTEMPTS:
                await _settle(store, pending, final=True)
                return
            records = await store.records(pending.ids())
            plan = _plan(env, records, pending, force=attempt == 0)
            marks = await store.marks()
            # The plan's UIDs are checked against the marks' UIDVALIDITY and its flag
            # replacements guarded by their modseqs (folder_work): nothing relies on the
            # connection the catch-up ran on.
            async with env.upstream() as upstream:
                await carry_out(await upstream.connection(), view.records, marks, plan, outcome)
            pending.touched |= outcome.touched
            for email_id, error in outcome.failed.items():
                pending.fail(email_id, error)
            if await _follow(env, store, plan, outcome, marks, records):
                await _settle(store, pending, final=False)
            else:
                _answered(records, outcome)
                _settle_with(records, pending, final=False)
        except CommandFailed:
            raise
        except (ImapError, LockTimeout) as exc:
            pending.touched |= outcome.touched
            pending.lost = exc
            if attempt == ATTEMPTS:
                _give_up(pending, exc)
                return
            log.warning("Email/set: upstream lost during attempt %d (%s)", attempt + 1, exc)


def _needs_fresh(pending: _Pending) -> bool:
    """Whether the plan must be made from the upstream as it is now, not from an index that
    may be up to the sync interval behind: copies are added and removed only as the upstream
    holds them (else an expunge could take a message's last copy), and a keyword is removed
    from every copy, including one another client just made (keywords are the union of the
    copies' flags). Adding keywords needs no catch-up: the copies known get them, which
    makes the union hold them whatever else exists."""
    if pending.destroys:
        return True
    return any(
        patch.mailboxes.requested or patch.keywords.whole is not None or patch.keywords.remove
        for _, patch in pending.updates.values()
    )


def _plan(
    env: RequestEnv, records: dict[str, EmailRecord], pending: _Pending, *, force: bool
) -> Plan:
    """The work for every pending object. ``force`` marks the first attempt, planned from
    an index that may lag the upstream; retries plan from a fresh catch-up."""
    plan = Plan()
    limit = env.services.settings.max_mailboxes_per_email
    for email_id, (_, patch) in list(pending.updates.items()):
        record = records.get(email_id)
        placed = Placed.of(record) if record is not None else None
        if record is None or placed is None or not placed.folders:
            pending.fail(email_id, SetError("notFound", "no such email"))
            continue
        try:
            target = target_of(placed, patch, limit)
        except SetError as error:
            pending.fail(email_id, error)
            continue
        pending.targets[email_id] = target
        plan_update(plan, record, placed, patch, target, force=force)
    for email_id in list(pending.destroys):
        record = records.get(email_id)
        if force and (record is None or not record.visible):
            pending.fail(email_id, SetError("notFound", "no such email"))
        elif record is not None:
            # On a retry, hidden copies left by a cut-off expunge are expunged now; an
            # email already gone is settled as destroyed.
            plan_destroy(plan, record)
    return plan


async def _follow(
    env: RequestEnv,
    store: EmailStore,
    plan: Plan,
    outcome: Outcome,
    marks: dict[str, FolderMark],
    records: dict[str, EmailRecord],
) -> bool:
    """Bring the index in step with what was done: copies added or removed are read back
    by a catch-up (True); flags alone are written from the STOREs' answers (False).

    A folder whose mark moved since the plan was made was caught up by another request
    meanwhile, possibly with changes newer than these answers: its flags are left to that
    catch-up's successors (the mark then differs from the upstream's, so the next one
    visits the folder), never overwritten with older ones. A STORE's answers alone cannot
    show that nobody else changed the folder (an answer for a message the STORE left as it
    was carries that message's mod-sequence, which may be another client's), so the
    folder's mark moves past them only where the upstream confirmed, after the STOREs, that
    nothing else changed (``outcome.proven``, gateway.translators.email.store_proof); the
    mark is written with the last page of flags, so an interruption before leaves it
    behind, which only costs a visit."""
    if plan.moves_mail and outcome.touched:
        await env.catch_up(fresh=True)
        return True
    if not any(outcome.flags.values()):
        return False
    async with store.lease() as held:
        now = await store.marks()
        writer = IndexWriter(store, held)
        for folder_id, flags in outcome.flags.items():
            mark = marks.get(folder_id)
            if mark is None or now.get(folder_id) != mark:
                continue
            moved = None
            if folder_id in outcome.proven:
                modseq = max(outcome.modseqs[folder_id].values())
                moved = moved_mark(mark, modseq, _indexed(records, folder_id), flags)
            answered = list(flags.items())
            for start in range(0, len(answered), FLAG_PAGE):
                last = start + FLAG_PAGE >= len(answered)
                page = dict(answered[start : start + FLAG_PAGE])
                # The mark goes with the last page: written with the flags, never before.
                await writer.set_flags(folder_id, page, moved if last else None)
    return False


def _indexed(records: dict[str, EmailRecord], folder_id: str) -> dict[int, list[str]]:
    """The flags the index held, before the call, of the folder's copies of ``records``."""
    return {
        uid: flags
        for record in records.values()
        for uid, flags in record.copies.get(folder_id, {}).items()
    }


def _answered(records: dict[str, EmailRecord], outcome: Outcome) -> None:
    """The records as the index now holds them: the STOREs' answers applied, as
    IndexWriter.set_flags applied them, without reading them back."""
    for record in records.values():
        for folder_id, uids in record.copies.items():
            answered = outcome.flags.get(folder_id, {})
            for uid in uids:
                if uid in answered:
                    uids[uid] = list(answered[uid])


async def _settle(store: EmailStore, pending: _Pending, *, final: bool) -> None:
    """Decide every object the index now shows as asked; with ``final``, the rest fail."""
    _settle_with(await store.records(pending.ids()), pending, final=final)


def _settle_with(records: dict[str, EmailRecord], pending: _Pending, *, final: bool) -> None:
    for email_id in list(pending.updates):
        record = records.get(email_id)
        target = pending.targets.get(email_id)
        if record is not None and target is not None and target.reached_by(record):
            pending.updated[email_id] = None
            del pending.updates[email_id]
        elif final:
            not_applied = SetError(
                "serverFail", "the mail server did not apply it", cause=pending.lost
            )
            pending.fail(email_id, not_applied)
    for email_id in list(pending.destroys):
        record = records.get(email_id)
        if record is None or not record.visible:
            pending.destroyed.append(email_id)
            del pending.destroys[email_id]
        elif final:
            kept = SetError("serverFail", "the mail server kept the email", cause=pending.lost)
            pending.fail(email_id, kept)


def _give_up(pending: _Pending, exc: Exception) -> None:
    """No connection even to look: the objects left are unknown."""
    if not pending.touched:
        raise MethodError(
            "serverUnavailable", "The mail server is unavailable; try again later."
        ) from exc
    for email_id in pending.ids():
        pending.fail(email_id, SetError("serverFail", LOST, cause=exc))

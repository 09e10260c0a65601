"""Mailbox/set (RFC 8621 2.5): CREATE, RENAME, SUBSCRIBE and DELETE on upstream folders.

Creates run first (parents before the children that reference them by ``#creationId``), then
updates, then destroys (children before parents), as RFC 8620 5.3 orders them. The index is
brought up to date by a sync after the upstream work, so a Mailbox the gateway created gets the
same id, counts and change-log entry as one created by any other IMAP client.

A failure of one object is a SetError for that object. If the upstream connection breaks half
way, the objects already done stay done: the call reports ``serverPartialFail`` so the client
re-syncs (RFC 8620 3.6.2), never a success that did not happen.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.cache.locks import LockTimeout
from gateway.cache.mailboxes import MailboxRecord
from gateway.cache.store import STORE_UNAVAILABLE
from gateway.env import RequestEnv
from gateway.imap import mailboxes, mutf7
from gateway.imap.connection import ImapConnection, Result
from gateway.imap.errors import CommandFailed, ImapError
from gateway.imap.lazy import LazyConnection
from gateway.imap.responses.status import parse_status
from gateway.jmap.dispatch import CallContext
from gateway.jmap.errors import MethodError, SetError
from gateway.jmap.standard import check_if_in_state, parse_set
from gateway.sync.mailboxes import INBOX, ROLE_ATTRIBUTES, IdStrategy
from gateway.translators.mailbox.objects import MAX_SORT_ORDER, PROPERTIES
from gateway.translators.mailbox.view import MailboxView, mailbox_view
from gateway.translators.upstream_refusals import Work, refused

log = logging.getLogger(__name__)

# Dovecot's Maildir++ keeps a folder with all its parents in one directory name, "." and the
# full name in modified UTF-7, so no full name takes more than 254 octets there (NAME_MAX 255:
# found by CREATE, and a RENAME that would lengthen a child past it fails whole). Cyrus takes
# more (490 octets with its "user.<login>." prefix). Checked before asking the upstream.
MAX_FULL_NAME_OCTETS = 254
# Advertised as maxSizeMailboxName (RFC 8621 1.3.1, in UTF-8 octets; at least 100): the
# longest top-level name that always fits once encoded. Modified UTF-7 grows a name most
# where lone 2-octet characters alternate with "&" ("é&é" is "&AOk-&-&AOk-", 7 octets for 3):
# any 109 octets take at most 254, some 110 take 257.
MAX_NAME_OCTETS = 109
ROLE_FLAGS = {role: attribute for attribute, role in ROLE_ATTRIBUTES.items()}


class PartialFailure(Exception):
    """The upstream broke after some objects were changed."""


class _TwinOfCreated(Exception):
    """A create names the sibling an earlier create of this call made, whose id is known
    only once the index has followed."""

    def __init__(self, creation_id: str) -> None:
        super().__init__(creation_id)
        self.creation_id = creation_id


# What may break a Mailbox/set half way: then the objects already changed are reported.
_PART_DONE: tuple[type[Exception], ...] = (
    PartialFailure,
    ImapError,
    LockTimeout,
    *STORE_UNAVAILABLE,
)


@dataclass
class SetRun:
    """One Mailbox/set call: its view of the mailboxes and what it has done so far."""

    ctx: CallContext[RequestEnv]
    upstream: LazyConnection
    conn: ImapConnection  # borrowed from ``upstream``; given back during a refresh
    view: MailboxView
    strategy: IdStrategy
    delimiter: str
    created_names: dict[str, str] = field(default_factory=dict)  # creation id -> full name
    # creation id -> the creation id of this call whose new mailbox has the same name
    twins: dict[str, str] = field(default_factory=dict)
    needs_sync: bool = False  # the upstream changed since the view was read
    did_anything: bool = False  # sticky: any change made, upstream or in the index
    # The view's mailboxes by _name_key, made once per view (every create and rename asks).
    _names: tuple[MailboxView, dict[str, list[MailboxRecord]]] | None = None

    def named(self, key: str) -> list[MailboxRecord]:
        """The mailboxes of the view whose full name has ``key`` (see _name_key)."""
        if self._names is None or self._names[0] is not self.view:
            index: dict[str, list[MailboxRecord]] = {}
            for record in self.view.records.values():
                index.setdefault(_name_key(self, record.name), []).append(record)
            self._names = (self.view, index)
        return self._names[1].get(key, [])

    @property
    def utf8(self) -> bool:
        return "UTF8=ACCEPT" in self.conn.enabled

    async def run(self, step: Awaitable[Result]) -> None:
        """One upstream command; a broken connection after earlier work is a partial failure.

        Renames and deletes run with ``conn.execute_unselected``: Dovecot ends a session (BYE,
        then a reset) whose selected mailbox, or one above it, is renamed or deleted, even by
        that session itself; a pooled connection may still have it selected from earlier work.
        """
        try:
            await step
        except CommandFailed:
            raise
        except ImapError as exc:
            if self.did_anything:
                raise PartialFailure from exc
            raise
        self.needs_sync = self.did_anything = True

    async def refresh(self) -> None:
        """Read the view again after a fresh catch-up. The catch-up borrows a connection of
        its own: this call's goes back to the pool meanwhile and one is borrowed again after
        (no command relies on what a connection has selected: see ``run``)."""
        await self.upstream.release()
        self.view = await mailbox_view(self.ctx.env, fresh=True)
        self.conn = await self.upstream.connection()

    async def follow_up(self, name: str, *, subscribed: bool) -> None:
        """A subscription change after the one the client asked for succeeded (it follows a
        CREATE, RENAME or DELETE): its refusal does not undo that success."""
        try:
            change = mailboxes.subscribe(name, utf8=self.utf8, subscribed=subscribed)
            await self.run(self.conn.execute(change))
        except CommandFailed as exc:
            verb = "SUBSCRIBE" if subscribed else "UNSUBSCRIBE"
            log.warning("upstream refused %s after a mailbox change (%s)", verb, exc.code)


async def mailbox_set(ctx: CallContext[RequestEnv], arguments: dict[str, Any]) -> dict[str, Any]:
    env = ctx.env
    args = parse_set(
        arguments, env.services.limits.max_objects_in_set, extra=("onDestroyRemoveEmails",)
    )
    remove_emails = arguments.get("onDestroyRemoveEmails", False)
    if not isinstance(remove_emails, bool):
        raise MethodError.invalid_arguments(
            "onDestroyRemoveEmails: must be a Boolean", arguments=["onDestroyRemoveEmails"]
        )
    view = await mailbox_view(env)
    check_if_in_state(args.if_in_state, view.state)
    strategy = IdStrategy(await view.store.meta("mailbox-ids") or IdStrategy.GATEWAY.value)
    async with env.upstream() as upstream:
        conn = await upstream.connection()
        run = SetRun(ctx, upstream, conn, view, strategy, _delimiter(view.records))
        response: dict[str, Any] = {"accountId": args.account_id, "oldState": view.state}
        try:
            await _apply(
                run,
                args.create or {},
                args.update or {},
                args.destroy or [],
                remove_emails,
                response,
            )
            if run.needs_sync:
                await run.refresh()
            # Sort orders change the state without an upstream command: read it again.
            state = (await run.view.store.snapshot())[1] if run.did_anything else view.state
        except _PART_DONE as exc:
            if not run.did_anything:
                raise
            log.warning("Mailbox/set broke off after changes were made", exc_info=exc)
            # RFC 8620 3.6.2: some changes were made; the client must re-synchronise.
            raise MethodError(
                "serverPartialFail",
                "Part of the changes were made before the mail server or the gateway's state "
                "store became unavailable. Re-synchronise.",
            ) from exc
        response["newState"] = state
    return response


async def _apply(
    run: SetRun,
    create: Mapping[str, dict[str, Any]],
    update: Mapping[str, dict[str, Any]],
    destroy: list[str],
    remove_emails: bool,
    response: dict[str, Any],
) -> None:
    created, not_created = await _create_all(run, create)
    if run.needs_sync:
        await run.refresh()
        run.needs_sync = False
    for creation_id, result in created.items():
        record = _by_name(run.view, run.created_names[creation_id])
        if record is None:
            not_created[creation_id] = SetError("forbidden", "the mail server did not keep it")
            continue
        run.ctx.created_ids[creation_id] = record.id
        await _set_sort_order(run, record.id, result.pop("sortOrder", None))
        obj = run.view.object(record)
        created[creation_id] = {k: v for k, v in obj.items() if k not in create[creation_id]}
    for creation_id, twin in run.twins.items():
        existing = run.ctx.created_ids.get(twin)
        not_created[creation_id] = (
            SetError.already_exists(existing, "a sibling created in this call has this name")
            if existing is not None
            else SetError.invalid_properties(["name"], "a sibling created in this call")
        )
    updated, not_updated = await _update_all(run, update)
    destroyed, not_destroyed = await _destroy_all(run, destroy, remove_emails)
    response.update(
        {
            "created": created or None,
            "notCreated": _errors(not_created),
            "updated": updated or None,
            "notUpdated": _errors(not_updated),
            "destroyed": destroyed or None,
            "notDestroyed": _errors(not_destroyed),
        }
    )


def _errors(errors: Mapping[str, SetError]) -> dict[str, Any] | None:
    return {key: error.to_dict() for key, error in errors.items()} or None


def _delimiter(records: Mapping[str, MailboxRecord]) -> str:
    return next((r.delimiter for r in records.values() if r.delimiter), "/")


def _by_name(view: MailboxView, name: str) -> MailboxRecord | None:
    return next((r for r in view.records.values() if r.name == name), None)


# -- create -------------------------------------------------------------------------------------


async def _create_all(
    run: SetRun, create: Mapping[str, dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], dict[str, SetError]]:
    done: dict[str, dict[str, Any]] = {}
    failed: dict[str, SetError] = {}
    for creation_id in _creation_order(create):
        try:
            done[creation_id] = await _create(run, creation_id, create[creation_id])
        except SetError as error:
            failed[creation_id] = error
        except _TwinOfCreated as twin:
            run.twins[creation_id] = twin.creation_id
        except CommandFailed as exc:
            failed[creation_id] = _upstream_error(exc)
    return done, failed


def _creation_order(create: Mapping[str, dict[str, Any]]) -> list[str]:
    """Parents created in this call come before the children that reference them."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(creation_id: str) -> None:
        if creation_id in order or creation_id in visiting:
            return
        visiting.add(creation_id)
        parent = create[creation_id].get("parentId")
        if isinstance(parent, str) and parent.startswith("#") and parent[1:] in create:
            visit(parent[1:])
        order.append(creation_id)

    for creation_id in create:
        visit(creation_id)
    return order


async def _create(run: SetRun, creation_id: str, props: dict[str, Any]) -> dict[str, Any]:
    _check_properties(props, allow_server_set=False)
    name = _valid_name(props.get("name"))
    parent_name = _parent_name(run, props.get("parentId"))
    full = _full_name(run, parent_name, name)
    _check_length(full, ["name"])
    _check_sibling(run, parent_name, name, exclude=None)
    subscribe = props.get("isSubscribed", True)
    if not isinstance(subscribe, bool):
        raise SetError.invalid_properties(["isSubscribed"], "must be a Boolean")
    sort_order = _sort_order(props.get("sortOrder"))
    special_use = _special_use(run, props.get("role"))
    try:
        create = mailboxes.create(full, utf8=run.utf8, special_use=special_use)
        await run.run(run.conn.execute(create))
    except CommandFailed:
        await _refused_as_duplicate(run, full, exclude=None)
        raise
    run.created_names[creation_id] = full
    if subscribe:
        await run.follow_up(full, subscribed=True)
    return {"sortOrder": sort_order} if sort_order is not None else {}


def _special_use(run: SetRun, role: object) -> str | None:
    """RFC 6154 5.2 CREATE-SPECIAL-USE, the only way the upstream takes a role on create."""
    if role is None:
        return None
    if not isinstance(role, str) or role not in ROLE_FLAGS:
        raise SetError.invalid_properties(["role"], "unknown role")
    if any(r.role == role for r in run.view.records.values()):
        raise SetError.invalid_properties(["role"], f"another mailbox has the role {role}")
    if "CREATE-SPECIAL-USE" not in run.conn.capabilities:
        raise SetError.invalid_properties(["role"], "the mail server cannot set roles")
    return ROLE_FLAGS[role]


# -- update -------------------------------------------------------------------------------------


async def _update_all(
    run: SetRun, update: Mapping[str, dict[str, Any]]
) -> tuple[dict[str, None], dict[str, SetError]]:
    done: dict[str, None] = {}
    failed: dict[str, SetError] = {}
    for key, patch in update.items():
        mailbox_id = _resolve(run, key)
        try:
            record = run.view.records.get(mailbox_id or "")
            if record is None:
                raise SetError("notFound", f"no mailbox {key}")
            if await _update(run, record, patch):
                # Names below the renamed mailbox changed too: later work needs them.
                await run.refresh()
            done[record.id] = None
        except SetError as error:
            failed[key] = error
        except CommandFailed as exc:
            failed[key] = _upstream_error(exc)
    return done, failed


async def _update(run: SetRun, record: MailboxRecord, patch: dict[str, Any]) -> bool:
    """Apply one patch; True when the mailbox was renamed."""
    current = run.view.object(record)
    _check_properties(patch, allow_server_set=True, current=current)
    if "role" in patch and patch["role"] != record.role:
        raise SetError.invalid_properties(["role"], "the mail server cannot change roles")
    subscribe = patch.get("isSubscribed", record.subscribed)
    if not isinstance(subscribe, bool):
        raise SetError.invalid_properties(["isSubscribed"], "must be a Boolean")
    sort_order = _sort_order(patch.get("sortOrder"))
    name = record.name
    if "name" in patch or "parentId" in patch:
        name = await _rename(run, record, patch, current)
    if subscribe != record.subscribed:
        change = mailboxes.subscribe(name, utf8=run.utf8, subscribed=subscribe)
        await run.run(run.conn.execute(change))
    await _set_sort_order(run, record.id, sort_order)
    return name != record.name


async def _rename(
    run: SetRun, record: MailboxRecord, patch: dict[str, Any], current: dict[str, Any]
) -> str:
    new_leaf = _valid_name(patch.get("name", current["name"]))
    parent_id = patch.get("parentId", record.parent_id)
    parent_name = _parent_name(run, parent_id)
    if new_leaf == current["name"] and parent_id == record.parent_id:
        return record.name
    if record.role == "inbox":
        raise SetError("forbidden", "the inbox cannot be renamed or moved")
    resolved_parent = _resolve(run, parent_id) if isinstance(parent_id, str) else None
    if resolved_parent is not None and _is_self_or_descendant(run, resolved_parent, record.id):
        raise SetError.invalid_properties(["parentId"], "a mailbox cannot be its own ancestor")
    _check_sibling(run, parent_name, new_leaf, exclude=record.id)
    full = _full_name(run, parent_name, new_leaf)
    prefix = record.name + run.delimiter
    below = [r for r in run.view.records.values() if r.name.startswith(prefix)]
    changed: list[str] = [key for key in ("name", "parentId") if key in patch]
    # The mailboxes below are renamed with it: their full names change as much.
    for new_name in (full, *(full + r.name[len(record.name) :] for r in below)):
        _check_length(new_name, changed)
    try:
        rename = mailboxes.rename(record.name, full, utf8=run.utf8)
        await run.run(run.conn.execute_unselected(rename))
    except CommandFailed:
        await _refused_as_duplicate(run, full, exclude=record.id)
        raise
    if run.strategy is IdStrategy.GATEWAY:
        await _carry_ids(run, record.name, full)
    # RFC 3501 6.3.5 leaves subscriptions alone on RENAME: move those of the mailbox and of
    # every mailbox below it, which were renamed with it.
    for moved in run.view.records.values():
        if moved.subscribed and (moved.id == record.id or moved.name.startswith(prefix)):
            await run.follow_up(moved.name, subscribed=False)
            await run.follow_up(full + moved.name[len(record.name) :], subscribed=True)
    return full


async def _carry_ids(run: SetRun, old: str, new: str) -> None:
    """Gateway-assigned ids follow a rename made through the gateway, children included."""
    names = await run.view.store.name_ids()
    prefix = old + run.delimiter
    moved = {
        new + name[len(old) :]: mailbox_id
        for name, mailbox_id in names.items()
        if name == old or name.startswith(prefix)
    }
    removed = [name for name in names if name == old or name.startswith(prefix)]
    await run.view.store.set_name_ids(moved, removed)


def _is_self_or_descendant(run: SetRun, candidate: str, ancestor: str) -> bool:
    seen: set[str] = set()
    current: str | None = candidate
    while current is not None and current not in seen:
        if current == ancestor:
            return True
        seen.add(current)
        record = run.view.records.get(current)
        current = record.parent_id if record else None
    return False


async def _set_sort_order(run: SetRun, mailbox_id: str, value: int | None) -> None:
    if value is not None and run.view.sort_orders.get(mailbox_id) != value:
        await run.view.store.set_sort_order(mailbox_id, value)
        run.view.sort_orders[mailbox_id] = value
        run.did_anything = True


# -- destroy ------------------------------------------------------------------------------------


async def _destroy_all(
    run: SetRun, destroy: list[str], remove_emails: bool
) -> tuple[list[str], dict[str, SetError]]:
    done: list[str] = []
    failed: dict[str, SetError] = {}
    targets = {key: _resolve(run, key) for key in dict.fromkeys(destroy)}
    # Children before their parents, so destroying a subtree in one call works.
    order = sorted(targets, key=lambda k: -_depth(run, targets[k]))
    gone: set[str] = set()
    for key in order:
        mailbox_id = targets[key]
        try:
            record = run.view.records.get(mailbox_id or "")
            if record is None:
                raise SetError("notFound", f"no mailbox {key}")
            await _destroy(run, record, remove_emails, gone)
            gone.add(record.id)
            done.append(record.id)
        except SetError as error:
            failed[key] = error
        except CommandFailed as exc:
            failed[key] = _upstream_error(exc)
    return done, failed


async def _destroy(run: SetRun, record: MailboxRecord, remove_emails: bool, gone: set[str]) -> None:
    if record.role == "inbox":
        raise SetError("forbidden", "the inbox cannot be destroyed")
    if any(child.id not in gone for child in run.view.children(record.id)):
        raise SetError("mailboxHasChild", "destroy or move its child mailboxes first")
    if not remove_emails and (record.total or await _holds_mail(run, record)):
        raise SetError("mailboxHasEmail", "the mailbox holds emails (onDestroyRemoveEmails)")
    await run.run(run.conn.execute_unselected(mailboxes.delete(record.name, utf8=run.utf8)))
    if record.subscribed:
        await run.follow_up(record.name, subscribed=False)


async def _holds_mail(run: SetRun, record: MailboxRecord) -> bool:
    """Ask again right before DELETE: mail may have arrived since the sync. (IMAP has no
    "delete if empty", so this narrows the window without closing it.) Unselected: about its
    selected mailbox a session answers STATUS from its own, possibly stale, view."""
    if not record.selectable:
        return False
    status = mailboxes.status(record.name, [mailboxes.StatusItem.MESSAGES], utf8=run.utf8)
    result = await run.conn.execute_unselected(status)
    return any(parse_status(r).items.get("MESSAGES", 0) for r in result.data("STATUS"))


def _depth(run: SetRun, mailbox_id: str | None) -> int:
    depth, current = 0, run.view.records.get(mailbox_id or "")
    while current is not None and current.parent_id is not None and depth < 1000:
        depth += 1
        current = run.view.records.get(current.parent_id)
    return depth


# -- shared checks ------------------------------------------------------------------------------


def _resolve(run: SetRun, value: str | None) -> str | None:
    """An id, or ``#creationId`` of a mailbox created earlier in this request."""
    if value is None or not value.startswith("#"):
        return value
    return run.ctx.created_ids.get(value[1:])


def _check_properties(
    props: Mapping[str, Any], *, allow_server_set: bool, current: Mapping[str, Any] | None = None
) -> None:
    """RFC 8620 5.3: unknown properties, and server-set ones with a new value, are invalid."""
    bad = [
        key
        for key, value in props.items()
        if "/" in key
        or key not in PROPERTIES
        or (
            key in PROPERTIES.server_set
            and not (allow_server_set and current and current[key] == value)
        )
    ]
    if bad:
        raise SetError.invalid_properties(bad, "unknown or server-set properties")


def _valid_name(value: object) -> str:
    """RFC 8621 2: at least one character, Net-Unicode (NFC), no hierarchy delimiter."""
    if not isinstance(value, str):
        raise SetError.invalid_properties(["name"], "must be a String")
    name = unicodedata.normalize("NFC", value)
    if not name or not name.strip():
        raise SetError.invalid_properties(["name"], "must not be empty")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise SetError.invalid_properties(["name"], "must not contain control characters")
    return name


def _parent_name(run: SetRun, parent_id: object) -> str | None:
    if parent_id is None:
        return None
    if not isinstance(parent_id, str):
        raise SetError.invalid_properties(["parentId"], "must be an Id or null")
    if parent_id.startswith("#") and parent_id[1:] in run.created_names:
        return run.created_names[parent_id[1:]]
    parent = run.view.records.get(_resolve(run, parent_id) or "")
    if parent is None:
        raise SetError.invalid_properties(["parentId"], "no such mailbox")
    if not parent.may_create_child:
        raise SetError.invalid_properties(["parentId"], "this mailbox cannot have children")
    return parent.name


def _full_name(run: SetRun, parent_name: str | None, leaf: str) -> str:
    if run.delimiter in leaf:
        raise SetError.invalid_properties(
            ["name"], f"must not contain the hierarchy delimiter {run.delimiter!r}"
        )
    return leaf if parent_name is None else parent_name + run.delimiter + leaf


def _check_length(full: str, properties: list[str]) -> None:
    """The full name, as the upstream stores it, within what every upstream keeps."""
    if len(mutf7.encode(full)) > MAX_FULL_NAME_OCTETS:
        raise SetError.invalid_properties(
            properties,
            f"the full name would be longer than the {MAX_FULL_NAME_OCTETS} octets of modified "
            "UTF-7 (RFC 3501 5.1.3) the mail server keeps",
        )


def _check_sibling(run: SetRun, parent_name: str | None, leaf: str, exclude: str | None) -> None:
    """RFC 8621 2: no two siblings with the same name; RFC 8620 5.3 and RFC 8621 2.5: a
    duplicate is ``alreadyExists`` naming the mailbox that has it."""
    full = _full_name(run, parent_name, leaf)
    same = _same_name(run, full, exclude)
    if same is not None:
        raise SetError.already_exists(same.id, "a sibling has this name")
    key = _name_key(run, full)
    for creation_id, name in run.created_names.items():
        if _name_key(run, name) == key:
            raise _TwinOfCreated(creation_id)


def _same_name(run: SetRun, full: str, exclude: str | None) -> MailboxRecord | None:
    return next((r for r in run.named(_name_key(run, full)) if r.id != exclude), None)


def _name_key(run: SetRun, full: str) -> str:
    """A full name as a duplicate is recognised: ``INBOX`` at its start in any case, as both
    Dovecot and Cyrus take ``inbox/x`` for ``INBOX/x`` (RFC 3501 5.1: INBOX is
    case-insensitive), and in Unicode NFC, as JMAP names are (RFC 8621 2: Net-Unicode), so
    that two names a client cannot tell apart are not made siblings (the upstreams
    themselves keep NFC and NFD spellings apart)."""
    head, delimiter, rest = full.partition(run.delimiter)
    if head.upper() == INBOX:
        full = INBOX + delimiter + rest
    return unicodedata.normalize("NFC", full)


async def _refused_as_duplicate(run: SetRun, full: str, exclude: str | None) -> None:
    """After the upstream refused a CREATE or RENAME to ``full``: raise ``alreadyExists`` if
    another client made a mailbox of that name since the view was read (Dovecot says
    [ALREADYEXISTS], Cyrus only NO)."""
    await run.refresh()
    same = _same_name(run, full, exclude)
    if same is not None:
        raise SetError.already_exists(same.id, "a sibling has this name") from None


def _sort_order(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SORT_ORDER:
        raise SetError.invalid_properties(["sortOrder"], "must be an UnsignedInt below 2^31")
    return value


def _upstream_error(exc: CommandFailed) -> SetError:
    return refused(exc, Work.MAILBOX)

"""Carries out a placement plan on one upstream connection, folder by folder.

Each folder is SELECTed once and its UIDVALIDITY checked against the index first: UIDs of
another UIDVALIDITY name other messages, which must never be flagged or expunged. A command
the upstream refuses fails the emails it was about (and copies already made for them are
expunged again, so the refusal leaves them as they were); any other upstream error
(connection lost, timeout) propagates, and the caller decides from a fresh look at the
upstream what happened.

A folder whose only work is flags gets a check pipelined behind its last STORE
(gateway.translators.email.store_proof): when nothing but the STOREs changed it since the
index's mark, the index's mark may move past them (``Outcome.proven``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from gateway.cache.emails import FolderMark
from gateway.cache.mailboxes import MailboxRecord
from gateway.imap import messages
from gateway.imap.connection import ImapConnection, Result
from gateway.imap.errors import CommandFailed
from gateway.imap.responses.codes import parse_copyuid, parse_modified
from gateway.imap.sequence import UidSet, split_uid_set
from gateway.jmap.errors import SetError
from gateway.translators.email import store_proof
from gateway.translators.email.placement import FlagStore, FolderWork, Plan
from gateway.translators.upstream_refusals import Work, refused

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What the upstream did with a plan, as far as its answers tell."""

    failed: dict[str, SetError] = field(default_factory=dict)
    # Emails to try again after a catch-up: the upstream changed under the index.
    retry: set[str] = field(default_factory=set)
    # folder id -> uid -> flags, as the STOREs answered them.
    flags: dict[str, dict[int, list[str]]] = field(default_factory=dict)
    # folder id -> uid -> the mod-sequence each answer carried (RFC 7162 3.1.3).
    modseqs: dict[str, dict[int, int]] = field(default_factory=dict)
    # Folders whose STOREs went otherwise than plainly (refused, MODIFIED, an answer
    # without MODSEQ, another response among the answers): nothing to prove there.
    unclean: set[str] = field(default_factory=set)
    # Folders proven changed by the STOREs alone since their mark (store_proof).
    proven: set[str] = field(default_factory=set)
    # Whether any command that changes mail was sent (answered or not).
    touched: bool = False
    # Copies made, (folder id, uid) per email: undone if a later step of the email fails.
    made: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def settled(self, email_id: str) -> bool:
        return email_id in self.failed or email_id in self.retry


@dataclass
class _Run:
    conn: ImapConnection
    folders: Mapping[str, MailboxRecord]
    marks: Mapping[str, FolderMark]
    outcome: Outcome

    @property
    def utf8(self) -> bool:
        return "UTF8=ACCEPT" in self.conn.enabled


async def carry_out(
    conn: ImapConnection,
    folders: Mapping[str, MailboxRecord],
    marks: Mapping[str, FolderMark],
    plan: Plan,
    outcome: Outcome,
) -> None:
    """Do the plan; ``outcome`` collects what happened, also when an exception escapes."""
    run = _Run(conn, folders, marks, outcome)
    if "UIDPLUS" not in conn.capabilities and plan.moves_mail:
        _fail(
            outcome,
            (e for w in plan.folders.values() for e in w.emails()),
            SetError("forbidden", "the mail server cannot remove single messages (no UIDPLUS)"),
        )
        return
    for folder_id, work in plan.folders.items():
        if await _open(run, folder_id, work.emails()):
            await _first_pass(run, folder_id, work)
    for folder_id, work in plan.folders.items():
        after = {u: e for u, e in work.expunge_after.items() if not outcome.settled(e)}
        if after and await _open(run, folder_id, after.values()):
            await _expunge(run, after)
    await _undo_failed_copies(run)


async def _open(run: _Run, folder_id: str, emails: Iterable[str]) -> bool:
    """Select a folder read-write; False (emails to retry) when it is not the one indexed.

    The UIDs of the plan were indexed under the folder mark's UIDVALIDITY (a listing may be
    newer than the index if a visit was skipped): under another, they name other messages.
    """
    folder = run.folders.get(folder_id)
    mark = run.marks.get(folder_id)
    if folder is not None and mark is not None:
        try:
            state = await run.conn.select(folder.name)
        except CommandFailed:
            state = None
        if state is not None and state.uidvalidity == mark.uidvalidity:
            if not state.read_only:
                return True
            _fail(run.outcome, emails, SetError("forbidden", "the mailbox is read-only"))
            return False
    run.outcome.retry.update(e for e in emails if e not in run.outcome.failed)
    return False


async def _first_pass(run: _Run, folder_id: str, work: FolderWork) -> None:
    moves = work.copy or work.move or work.expunge or work.expunge_after
    # A folder whose only work is flags is checked behind its last STORE (store_proof).
    since = None if moves else _check_since(run, folder_id)
    stores = list(work.flags.items())
    for n, (store, owners) in enumerate(stores, 1):
        await _store_flags(run, folder_id, store, owners, since if n == len(stores) else None)
    for destination, owners in work.copy.items():
        await _copy(run, destination, owners, move=False)
    for destination, owners in work.move.items():
        await _copy(run, destination, owners, move=True)
    if work.expunge:
        await _expunge(run, work.expunge)


def _check_since(run: _Run, folder_id: str) -> int | None:
    """The mod-sequence the folder's STOREs are checked from (its mark's), or None where
    no proof can be had (no QRESYNC for VANISHED, no mod-sequence in the mark)."""
    mark = run.marks.get(folder_id)
    if mark is None or not mark.modseq or "QRESYNC" not in run.conn.enabled:
        return None
    return mark.modseq


async def _store_flags(
    run: _Run, folder_id: str, store: FlagStore, owners: dict[int, str], since: int | None
) -> None:
    """The STOREs of one flag change; with ``since``, the last goes out with the folder's
    check behind it, in one round trip (store_proof)."""
    owners = {u: e for u, e in owners.items() if not run.outcome.settled(e)}
    mark = run.marks.get(folder_id)
    guard: int | None = None
    changes: list[tuple[Literal["+", "-", ""], frozenset[str]]]
    changes = [("+", store.add), ("-", store.remove)]
    if store.replace is not None:
        changes = [("", store.replace)]
        if mark is not None and mark.modseq and "CONDSTORE" in run.conn.capabilities:
            guard = mark.modseq
    stores = [
        (chunk, messages.uid_store(chunk, sorted(flags), mode=mode, unchanged_since=guard))
        for mode, flags in changes
        if flags or store.replace is not None
        for chunk in split_uid_set(owners)
    ]
    for n, (chunk, command) in enumerate(stores, 1):
        run.outcome.touched = True
        try:
            if since is None or n < len(stores):
                result = await run.conn.execute(command)
            else:
                # The STORE with the folder's check pipelined behind it (RFC 3501 5.5: the
                # server runs the check after the STORE, both being about the same
                # mod-sequences); a refused check is no proof.
                result, check = await run.conn.execute_pipelined(
                    command, messages.uid_changed_since(messages.EVERY_UID, since), check=False
                )
                _refused(result)
                _take_checked(run, folder_id, result, check, since, owners)
                continue
        except CommandFailed as exc:
            run.outcome.unclean.add(folder_id)
            _fail(run.outcome, (owners[u] for u in UidSet.parse(chunk)), _set_error(exc))
            continue
        items, clean = messages.store_answers(result.raw)
        _take_flags(run, folder_id, items, clean, result, owners)


def _refused(result: Result) -> None:
    """Raise a pipelined command's NO or BAD as CommandFailed, as execute() does."""
    tagged = result.tagged
    if tagged.status != "OK":
        raise CommandFailed(tagged.status, tagged.code.name if tagged.code else None, tagged.text)


def _take_checked(
    run: _Run, folder_id: str, result: Result, check: Result, since: int, owners: dict[int, str]
) -> None:
    """The last STORE's answers and the check's reports, told apart (store_proof.split);
    the folder is proven when the reports show nothing but the answers."""
    items, clean, reports = store_proof.split(result.raw)
    _take_flags(run, folder_id, items, clean, result, owners)
    answered = run.outcome.modseqs.get(folder_id, {})
    if (
        reports is not None
        and check.tagged.status == "OK"
        and folder_id not in run.outcome.unclean
        and store_proof.proven(reports, answered, since)
    ):
        run.outcome.proven.add(folder_id)


def _take_flags(
    run: _Run,
    folder_id: str,
    items: Mapping[int, messages.Answer],
    clean: bool,
    result: Result,
    owners: dict[int, str],
) -> None:
    """A STORE's answers (messages.store_answers: uid -> flags and mod-sequence)."""
    answered = run.outcome.flags.setdefault(folder_id, {})
    modseqs = run.outcome.modseqs.setdefault(folder_id, {})
    if not clean:
        run.outcome.unclean.add(folder_id)
    for uid, (flags, modseq) in items.items():
        if flags is not None:
            answered[uid] = flags
        if modseq is not None:
            modseqs[uid] = modseq
        else:
            run.outcome.unclean.add(folder_id)
    code = result.tagged.code
    if code is not None and code.name == "MODIFIED":
        run.outcome.unclean.add(folder_id)
        # Changed by someone else since the index saw it: decide again after a catch-up.
        run.outcome.retry.update(owners[u] for u in parse_modified(code) if u in owners)


async def _copy(run: _Run, destination: str, owners: dict[int, str], *, move: bool) -> None:
    """UID COPY or MOVE; an email whose UID the answer's COPYUID leaves out was not copied
    (gone meanwhile) and is decided again after a catch-up, so nothing that depends on
    the copy (the second-pass expunges) runs for it."""
    owners = {u: e for u, e in owners.items() if not run.outcome.settled(e)}
    if not owners:
        return
    if destination not in run.folders:
        run.outcome.retry.update(owners.values())
        return
    native = move and "MOVE" in run.conn.capabilities
    name = run.folders[destination].name
    for chunk in split_uid_set(owners):
        part = {u: owners[u] for u in UidSet.parse(chunk)}
        run.outcome.touched = True
        try:
            result = await run.conn.execute(
                messages.uid_copy(chunk, name, utf8=run.utf8, move=native)
            )
        except CommandFailed as exc:
            _fail(run.outcome, part.values(), _set_error(exc))
            continue
        copied: set[int] = set()
        for code in [result.tagged.code, *(u.code for u in result.untagged if u.is_status)]:
            if code is not None and code.name == "COPYUID":
                for source, made in parse_copyuid(code).pairs():
                    if source in part:
                        copied.add(source)
                        if not native:
                            run.outcome.made.setdefault(part[source], []).append(
                                (destination, made)
                            )
        run.outcome.retry.update(e for u, e in part.items() if u not in copied)
        if move and not native:
            moved = {u: e for u, e in part.items() if u in copied}
            await _expunge(run, moved)
            for email_id in moved.values():
                if email_id not in run.outcome.failed:
                    run.outcome.made.pop(email_id, None)


async def _expunge(run: _Run, owners: dict[int, str]) -> None:
    """Flag exactly these UIDs \\Deleted and expunge exactly them, in one round trip."""
    owners = {u: e for u, e in owners.items() if not run.outcome.settled(e)}
    for chunk in split_uid_set(owners):
        run.outcome.touched = True
        try:
            await run.conn.execute_pipelined(*messages.remove(chunk))
        except CommandFailed as exc:
            _fail(run.outcome, (owners[u] for u in UidSet.parse(chunk)), _set_error(exc))


async def _undo_failed_copies(run: _Run) -> None:
    """Copies made for an email whose later step was refused are expunged again, so the
    refusal leaves it where it was."""
    undo: dict[str, dict[int, str]] = {}
    for email_id, made in run.outcome.made.items():
        if email_id in run.outcome.failed:
            for folder_id, uid in made:
                undo.setdefault(folder_id, {})[uid] = email_id
    for folder_id, owners in undo.items():
        folder = run.folders[folder_id]
        try:
            await _remove_copies(run, folder, owners)
        except CommandFailed as exc:
            log.warning("could not undo copies made for a refused change (%s)", exc.code)


async def _remove_copies(run: _Run, folder: MailboxRecord, owners: dict[int, str]) -> None:
    state = await run.conn.select(folder.name)
    mark = run.marks.get(folder.id)
    if mark is not None and state.uidvalidity != mark.uidvalidity:
        log.warning("could not undo copies made in a folder whose UIDVALIDITY changed")
        return
    for chunk in split_uid_set(owners):
        await run.conn.execute_pipelined(*messages.remove(chunk))


def _fail(outcome: Outcome, emails: Iterable[str], error: SetError) -> None:
    for email_id in emails:
        outcome.failed.setdefault(email_id, error)


def _set_error(exc: CommandFailed) -> SetError:
    return refused(exc, Work.EMAIL_CHANGE)

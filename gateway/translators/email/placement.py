"""Plans the upstream work of Email/set updates and destroys, folder by folder.

An Email is one message with a copy in each of its mailboxes; changing its mailboxIds is
copying, moving and expunging copies. The plan keeps every message somewhere at every step,
so a change that breaks half way never loses mail:

* when the Email keeps a mailbox, new mailboxes get a COPY from a kept copy and dropped ones
  an expunge, in any order;
* when it keeps none, one copy is MOVEd (atomic upstream, RFC 6851) to the first new mailbox
  after COPYs to the others, and the other dropped copies are expunged only once that move
  succeeded (the "after" work).

Flags are stored on the copies that stay before any copy or move, so new copies carry them.
Work is grouped per folder and per kind, so marking five hundred emails read in one folder
is one UID STORE. Expunges name exact UIDs (UID EXPUNGE, RFC 4315): nothing the client did
not ask to remove is ever expunged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from gateway.cache.emails import EmailRecord, is_deleted
from gateway.jmap.errors import SetError
from gateway.translators.email.patch import MAX_KEYWORDS, EmailPatch, SetChange
from gateway.translators.keywords import SYSTEM_FLAGS, keyword_of, keyword_set

# Distinct flag combinations (and, for STOREs, keyword changes) whose reading is remembered:
# one Email/set usually applies one change to copies with a handful of flag combinations.
_REMEMBERED_STORES = 1024


@dataclass(frozen=True)
class FlagStore:
    """A UID STORE: IMAP flags to add and to remove (a patch), or the whole new list (a
    replacement, ``replace``), which is sent only where the message is unchanged since the
    index last saw its folder (UNCHANGEDSINCE, RFC 7162 3.1.3): one command, so its guard
    is not tripped by the gateway's own change."""

    add: frozenset[str] = frozenset()
    remove: frozenset[str] = frozenset()
    replace: frozenset[str] | None = None


@dataclass
class FolderWork:
    """What one folder's selection does, in this order; every map is uid -> email id."""

    flags: dict[FlagStore, dict[int, str]] = field(default_factory=dict)
    copy: dict[str, dict[int, str]] = field(default_factory=dict)  # by destination folder
    move: dict[str, dict[int, str]] = field(default_factory=dict)  # by destination folder
    expunge: dict[int, str] = field(default_factory=dict)
    # Expunged in a second pass, only for emails whose first-pass work all succeeded.
    expunge_after: dict[int, str] = field(default_factory=dict)

    def emails(self) -> set[str]:
        found = {e for uids in self.flags.values() for e in uids.values()}
        found.update(
            e for uids in (*self.copy.values(), *self.move.values()) for e in uids.values()
        )
        found.update(self.expunge.values(), self.expunge_after.values())
        return found


@dataclass
class Plan:
    folders: dict[str, FolderWork] = field(default_factory=dict)

    def work(self, folder_id: str) -> FolderWork:
        work = self.folders.get(folder_id)
        if work is None:
            work = self.folders[folder_id] = FolderWork()
        return work

    @property
    def moves_mail(self) -> bool:
        """Whether any copy is created or removed (the index then needs a catch-up)."""
        return any(w.copy or w.move or w.expunge or w.expunge_after for w in self.folders.values())


@dataclass(frozen=True, slots=True)
class Placed:
    """An Email's visible copies and its keywords (the union of theirs), read once from its
    record for everything a plan asks of it."""

    folders: dict[str, dict[int, list[str]]]  # mailbox id -> uid -> flags
    keywords: frozenset[str]

    @classmethod
    def of(cls, record: EmailRecord) -> Placed:
        folders: dict[str, dict[int, list[str]]] = {}
        keywords: frozenset[str] = frozenset()
        for folder, uids in record.copies.items():
            for uid, flags in uids.items():
                hidden, own = _copy_view(tuple(flags))
                if not hidden:
                    folders.setdefault(folder, {})[uid] = flags
                    keywords = keywords | own if keywords else own
        return cls(folders, keywords)


@dataclass(frozen=True)
class Target:
    """What an Email must look like once its update is done."""

    keywords: frozenset[str]
    mailboxes: frozenset[str]

    def reached_by(self, record: EmailRecord) -> bool:
        placed = Placed.of(record)
        return placed.keywords == self.keywords and self.mailboxes == placed.folders.keys()


def target_of(placed: Placed, patch: EmailPatch, max_mailboxes: int) -> Target:
    """The Email after the patch; raise the SetError of a change the rules forbid."""
    keywords = placed.keywords
    mailboxes = frozenset(placed.folders)
    wanted_keywords = patch.keywords.applied(keywords)
    wanted_mailboxes = patch.mailboxes.applied(mailboxes)
    if not wanted_mailboxes:
        # RFC 8621 4.1.1: an Email belongs to one or more mailboxes until destroyed.
        raise SetError.invalid_properties(
            ["mailboxIds"], "an Email must stay in at least one mailbox (destroy it instead)"
        )
    if len(wanted_mailboxes) > max_mailboxes and len(wanted_mailboxes) > len(mailboxes):
        raise SetError("tooManyMailboxes", f"an Email may be in at most {max_mailboxes}")
    if len(wanted_keywords) > MAX_KEYWORDS and len(wanted_keywords) > len(keywords):
        raise SetError("tooManyKeywords", f"an Email may have at most {MAX_KEYWORDS} keywords")
    return Target(wanted_keywords, wanted_mailboxes)


def plan_update(
    plan: Plan,
    record: EmailRecord,
    placed: Placed,
    patch: EmailPatch,
    target: Target,
    *,
    force: bool,
) -> None:
    """Add one Email's update to the plan (``placed``: the record's visible copies).

    ``force``: send patched keywords even to copies the index says already have them. The
    first attempt does, because the index may lag the upstream by the sync interval; a retry
    after a fresh catch-up does not need to.
    """
    folders = placed.folders
    if not patch.mailboxes.requested:
        # Keywords alone, the usual bulk change: every visible copy stays and is flagged.
        for folder in sorted(folders):
            for uid, flags in folders[folder].items():
                _add_flag_store(plan, folder, uid, flags, record.id, patch, force)
        return
    current = frozenset(folders)
    added = sorted(target.mailboxes - current)
    removed = sorted(current - target.mailboxes)
    kept = sorted(current & target.mailboxes)
    flagged: list[tuple[str, int, list[str]]] = [
        (m, uid, flags) for m in kept for uid, flags in folders[m].items()
    ]
    if added and not kept:
        anchor = removed[0]
        uid = min(folders[anchor])
        flagged.append((anchor, uid, folders[anchor][uid]))
        work = plan.work(anchor)
        for destination in added[1:]:
            work.copy.setdefault(destination, {})[uid] = record.id
        work.move.setdefault(added[0], {})[uid] = record.id
        for folder in removed:
            for other in folders[folder]:
                if (folder, other) != (anchor, uid):
                    plan.work(folder).expunge_after[other] = record.id
    else:
        if added:
            source = kept[0]
            uid = min(folders[source])
            for destination in added:
                plan.work(source).copy.setdefault(destination, {})[uid] = record.id
        for folder in removed:
            for other in folders[folder]:
                plan.work(folder).expunge[other] = record.id
    # When the client changes mailboxes, hidden (\\Deleted) copies in folders it leaves go
    # too: an expunge cut off after its STORE leaves such a copy behind. A keyword change
    # never expunges: an IMAP user may still undelete theirs.
    for folder, uids in record.copies.items():
        if folder in target.mailboxes or (folder not in removed and force):
            continue
        for uid, flags in uids.items():
            if is_deleted(flags):
                work = plan.work(folder)
                (work.expunge if kept else work.expunge_after)[uid] = record.id
    for folder, uid, flags in flagged:
        _add_flag_store(plan, folder, uid, flags, record.id, patch, force)


def _add_flag_store(
    plan: Plan,
    folder: str,
    uid: int,
    flags: list[str],
    email_id: str,
    patch: EmailPatch,
    force: bool,
) -> None:
    store = _flag_store(tuple(flags), patch.keywords, force)
    if store is not None:
        plan.work(folder).flags.setdefault(store, {})[uid] = email_id


def plan_destroy(plan: Plan, record: EmailRecord) -> None:
    """Every copy goes, hidden (\\Deleted) ones too."""
    for folder, uids in record.copies.items():
        for uid in uids:
            plan.work(folder).expunge[uid] = record.id


@lru_cache(maxsize=_REMEMBERED_STORES)
def _copy_view(flags: tuple[str, ...]) -> tuple[bool, frozenset[str]]:
    """Whether a copy with these flags is hidden (\\Deleted), and its keywords; copies share
    a handful of flag combinations, so each is worked out once."""
    return is_deleted(flags), keyword_set(flags)


@lru_cache(maxsize=_REMEMBERED_STORES)
def _flag_store(flags: tuple[str, ...], change: SetChange, force: bool) -> FlagStore | None:
    """The STORE that gives one copy with ``flags`` the keywords ``change`` asks for; a pure
    function of its arguments, so the copies of one Email/set share the answer."""
    have = keyword_set(flags)
    if change.whole is not None:
        wanted = change.applied(have)
        if have == wanted:
            return None
        # Flags that are no keyword (e.g. not valid as one) stay as they are.
        kept = {f for f in flags if keyword_of(f) is None and f.lower() != "\\recent"}
        return FlagStore(replace=_as_flags(wanted, flags) | kept)
    add = change.add if force else change.add - have
    remove = change.remove if force else change.remove & have
    if not add and not remove:
        return None
    return FlagStore(_as_flags(add, flags), _as_flags(remove, flags))


def _as_flags(keywords: Iterable[str], spelled: Iterable[str]) -> frozenset[str]:
    """IMAP flags for keywords, spelled as the copy spells them where it has them."""
    by_keyword = {flag.lower(): flag for flag in spelled}
    flags = set()
    for keyword in keywords:
        system = SYSTEM_FLAGS.get(keyword)
        flags.add(system or by_keyword.get(keyword, keyword))
    return frozenset(flags)

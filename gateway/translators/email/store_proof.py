"""Whether a folder changed only by Email/set's own STOREs since the index's mark: then the
mark moves past them, and the next catch-up need not visit the folder to read them back.

A STORE's answers alone cannot show this: another client may have changed other messages
of the folder meanwhile, and a message a STORE leaves as it was is answered with its own
mod-sequence, which may be that other client's (RFC 7162 3.1.3;
tests/translators/test_email_set_marks.py). Nor can counting mod-sequences: RFC 7162 3.1
only makes them grow (each STORE command gets its own, possibly shared by all the messages
it changed; Cyrus counts per user, across folders), never makes them consecutive.

So the upstream is asked, on the same selection, right after the STOREs and in one round
trip (:func:`checks`), with ``M`` the folder mark's mod-sequence (the index holds
every change of the folder up to ``M``: the QRESYNC baseline of its last visit):

1. ``UID FETCH <every UID but the answered ones> (UID) (CHANGEDSINCE M VANISHED)``: every
   other message whose mod-sequence is above ``M``, new ones included (the set ends in
   ``n:*``), and every UID expunged since ``M`` (QRESYNC: an expunge gets a mod-sequence,
   RFC 7162 3.2 and 3.2.6);
2. ``UID FETCH <the answered UIDs> (UID) (CHANGEDSINCE m VANISHED)``, ``m`` the lowest
   mod-sequence the STOREs answered: every answered message changed after its answer.

The proof holds (:func:`proven`) when neither reports anything but answered messages with
exactly the mod-sequence they were answered with, no VANISHED, and no other untagged
response (EXISTS, EXPUNGE, FLAGS...) arrived with the STOREs or the checks. Then:

- every message outside the answers has a mod-sequence of at most ``M``: unchanged since
  the index's mark, so its indexed flags are the upstream's (a no-op STORE's message that
  was not answered is among them);
- every answered message's mod-sequence is the one it was answered with; a mod-sequence
  grows with every change of the message's flags (RFC 7162 3.1), so the answered flags are
  its flags now, whoever set them (an answer carrying another client's change is as true);
- nothing was expunged or added since ``M``.

So once the answers are written, the index holds the folder as it was when the checks ran.
The mark's mod-sequence becomes ``R``, the highest answered: every later change gets a
mod-sequence above the folder's HIGHESTMODSEQ at the checks, which is at least ``R``, so a
QRESYNC from ``R`` reads it. Where the server reports other sessions' changes only at the
end of a command (Dovecot syncs the session's view then), they arrive as untagged FETCH or
VANISHED responses of the checks, which fail the proof just the same.

The mark's listing figures (HIGHESTMODSEQ, UIDNEXT, MESSAGES, UNSEEN) are predicted
(:func:`moved_mark`): ``R``, the same UIDNEXT and MESSAGES, UNSEEN moved by the answers. A
listing that says exactly that skips the folder; that is sound because its HIGHESTMODSEQ
is ``R``: nothing changed after the checks. A prediction that misses (the folder's
HIGHESTMODSEQ moved for something no message shows, such as SETMETADATA) only costs a visit
from ``R``, which reads nothing back.

Without QRESYNC, without a mod-sequence in the mark or in every answer, after a refusal or
a MODIFIED, or where the UIDs to check would take more than :data:`MAX_CHECKS` commands,
there is no proof and the mark stays: the next catch-up visits the folder as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from gateway.cache.emails import FolderMark
from gateway.imap import messages
from gateway.imap.connection import ImapConnection, Result
from gateway.imap.errors import CommandFailed
from gateway.imap.sequence import MAX_NUMBER, UidSet, split_uid_set

# Commands one check may take (fragmented sets need several, RFC 7162 4's line length);
# past it the folder is left to the next catch-up.
MAX_CHECKS = 8
# A check's UID set, leaving room for ``,n:*`` within RFC 7162 4's ~8,000 octets.
CHECK_OCTETS = 7_960
SEEN = "\\Seen"
_FETCH = re.compile(rb"\* [0-9]+ FETCH \(")


def only_fetch_heads(raws: Sequence[bytes]) -> bool:
    """Whether every untagged response is a FETCH: anything else (EXISTS, EXPUNGE,
    VANISHED, FLAGS) tells of a change the proof cannot account for."""
    return all(_FETCH.match(raw) for raw in raws)


def checks(answered: Mapping[int, int], mark_modseq: int) -> list[tuple[str, int]] | None:
    """The checks of the module's argument as (UIDs, CHANGEDSINCE) pairs, one command each
    (messages.uid_changed_since), or None when they would take too many commands (or
    nothing was answered: nothing to prove)."""
    if not answered:
        return None
    stored = UidSet.of(answered)
    gaps: list[tuple[int, int]] = []
    low = 1
    for first, last in stored.ranges:
        if first > low:
            gaps.append((low, first - 1))
        low = last + 1
    # The UIDs above the answered ones go with the last chunk of those below (``n:*``).
    others = split_uid_set(UidSet.from_ranges(gaps), CHECK_OCTETS)
    if low <= MAX_NUMBER:
        others[-1:] = [",".join([*others[-1:], f"{low}:*"])]
    found = [(chunk, mark_modseq) for chunk in others]
    least = min(answered.values())
    found += [(chunk, least) for chunk in split_uid_set(stored, CHECK_OCTETS)]
    return found if len(found) <= MAX_CHECKS else None


def proven(results: Iterable[Result], answered: Mapping[int, int]) -> bool:
    """Whether the checks' answers report nothing but the answered messages as answered:
    each a FETCH naming its UID, with the mod-sequence the STOREs answered. One message may
    be reported twice (``n:*`` also names the last message, RFC 3501 6.4.8), both alike."""
    for raws in _distinct(results):
        if not only_fetch_heads(raws):
            return False
        for raw in raws:
            found, clean = messages.store_answers((raw,))
            if not clean or len(found) != 1:
                return False
            ((uid, (_, modseq)),) = found.items()
            if modseq is None or answered.get(uid) != modseq:
                return False
    return True


def _distinct(results: Iterable[Result]) -> list[Sequence[bytes]]:
    """The untagged responses of pipelined commands, once: every result may hold them all
    (ImapConnection.execute_pipelined)."""
    seen: dict[int, Sequence[bytes]] = {}
    for result in results:
        seen.setdefault(id(result.raw), result.raw)
    return list(seen.values())


async def prove(conn: ImapConnection, mark_modseq: int, answered: Mapping[int, int]) -> bool:
    """Run the checks on ``conn`` (the folder still selected): True when the STOREs'
    answers ``answered`` (uid -> mod-sequence) are all that changed since ``mark_modseq``.
    A refused check is no proof."""
    if "QRESYNC" not in conn.enabled:
        return False
    pairs = checks(answered, mark_modseq)
    if pairs is None:
        return False
    commands = [messages.uid_changed_since(uids, since) for uids, since in pairs]
    try:
        results = await conn.execute_pipelined(*commands)
    except CommandFailed:
        return False
    return proven(results, answered)


def moved_mark(
    mark: FolderMark,
    modseq: int,
    before: Mapping[int, Sequence[str]],
    after: Mapping[int, list[str]],
) -> FolderMark:
    """The mark once the proven answers are written: the QRESYNC baseline ``modseq`` and the
    listing figures the folder should now show. ``before``: the indexed flags of the answered
    UIDs; one missing (an answer about a message the call did not plan) leaves UNSEEN
    unknown, and a status that no listing matches makes the next catch-up visit from
    ``modseq``."""
    status = mark.status
    if len(status) != 4 or status[3] is None or any(uid not in before for uid in after):
        return replace(mark, modseq=modseq, status=(None, None, -1, -1))
    unread = status[3]
    for uid, flags in after.items():
        unread += (SEEN in before[uid]) - (SEEN in flags)
    return replace(mark, modseq=modseq, status=(modseq, status[1], status[2], unread))

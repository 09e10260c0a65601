"""Whether a folder changed only by Email/set's own STOREs since the index's mark: then the
mark moves past them, and the next catch-up need not visit the folder to read them back.

A STORE's answers alone cannot show this: another client may have changed other messages
of the folder meanwhile, and a message a STORE leaves as it was is answered with its own
mod-sequence, which may be that other client's (RFC 7162 3.1.3;
tests/translators/test_email_set_marks.py). Nor can counting mod-sequences: RFC 7162 3.1
only makes them grow (Dovecot gives all the messages of one STORE one mod-sequence, Cyrus
one each, counted per user across folders), never makes them consecutive.

So the folder's last STORE goes out with a check pipelined behind it, on the same selection
(folder_work): ``UID FETCH 1:4294967295 (UID) (CHANGEDSINCE M VANISHED)``, ``M`` the folder
mark's mod-sequence (the index holds every change of the folder up to ``M``: the QRESYNC
baseline of its last visit). RFC 3501 5.5 makes the server run it after the STORE (both are
about the same messages' mod-sequences), and it reports every message whose mod-sequence is
above ``M`` with that mod-sequence (RFC 7162 3.1.4.1), new ones included, and every UID
expunged since ``M`` (VANISHED (EARLIER): with QRESYNC an expunge gets a mod-sequence, RFC
7162 3.2 and 3.2.6). The range names every UID there can be, not ``1:*``: Cyrus ends ``*``
at the highest UID that exists now, and the expunge of the folder's last message would go
unheard.

The proof holds (:func:`proven`) when the check reports nothing but answered messages, each
with exactly the mod-sequence its answer carried, reports every message answered with one
above ``M`` (so it ran after the STOREs), no VANISHED came, and no untagged response but
FETCHes (no EXISTS, EXPUNGE, FLAGS...) came with the STOREs or the check. Then:

- every message not reported has a mod-sequence of at most ``M``: unchanged since the
  index's mark, so its indexed flags are the upstream's (a message a STORE left as it was
  and did not answer is among them);
- every reported message's mod-sequence is the one it was answered with; a mod-sequence
  grows with every change of the message's flags (RFC 7162 3.1), so the answered flags are
  its flags now, whoever set them (an answer carrying another client's change is as true);
- nothing was expunged or added since ``M``.

So once the answers are written, the index holds the folder as it was when the check ran.
The mark's mod-sequence becomes ``R``, the highest answered: every later change gets a
mod-sequence above the folder's HIGHESTMODSEQ at the check, which is at least ``R``, so a
QRESYNC from ``R`` reads it. Where the server reports other sessions' changes only at the
end of a command (Dovecot syncs the session's view then), they arrive as untagged FETCH or
VANISHED responses, which either take part in the proof as answers (a FETCH with FLAGS is
the message's state as of its mod-sequence) or fail it.

The mark's listing figures (HIGHESTMODSEQ, UIDNEXT, MESSAGES, UNSEEN) are predicted
(:func:`moved_mark`): ``R``, the same UIDNEXT and MESSAGES, UNSEEN moved by the answers. A
listing that says exactly that skips the folder; that is sound because its HIGHESTMODSEQ
is ``R``: nothing changed after the check. A prediction that misses (the folder's
HIGHESTMODSEQ moved for something no message shows, such as SETMETADATA) only costs a visit
from ``R``, which reads nothing back.

Without QRESYNC or a mod-sequence in the mark or in every answer, after a refusal or a
MODIFIED, there is no proof and the mark stays: the next catch-up visits the folder as
before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

from gateway.cache.emails import FolderMark
from gateway.imap import messages

SEEN = "\\Seen"
_FETCH = re.compile(rb"\* [0-9]+ FETCH \(")
# The check's report in the shape servers send it, read without the general answer reader
# (a 500-message call's check reports its 500 messages).
_REPORT = re.compile(rb"\* [0-9]+ FETCH \(UID ([0-9]{1,10}) MODSEQ \(([0-9]{1,20})\)\)")


def split(
    raws: Sequence[bytes],
) -> tuple[dict[int, messages.Answer], bool, dict[int, int] | None]:
    """The untagged responses of a STORE and the check behind it, told apart: the STORE's
    answers as messages.store_answers reads them (a FETCH with FLAGS: the STORE's own, or
    another session's change reported meanwhile), whether they were clean, and the check's
    reports, uid -> mod-sequence (a FETCH of UID and MODSEQ alone), or None when anything
    else came (EXISTS, EXPUNGE, VANISHED, FLAGS, two reports of one message that differ)."""
    items: dict[int, messages.Answer] = {}
    clean = True
    reports: dict[int, int] | None = {}
    for raw in raws:
        report = _REPORT.fullmatch(raw)
        if report is not None:
            if reports is not None:
                uid, modseq = int(report.group(1)), int(report.group(2))
                if reports.setdefault(uid, modseq) != modseq:
                    reports = None
            continue
        answer = messages.read_answer(raw) if _FETCH.match(raw) else None
        if answer is None:
            clean, reports = False, None
        elif answer[1] is not None:
            clean = messages.add_answer(items, answer) and clean
        elif reports is not None and (
            answer[2] is None or reports.setdefault(answer[0], answer[2]) != answer[2]
        ):
            reports = None
    return items, clean, reports


def proven(reports: Mapping[int, int], answered: Mapping[int, int], mark_modseq: int) -> bool:
    """Whether the check's ``reports`` show the folder changed by the ``answered`` messages
    alone (uid -> mod-sequence each), and some answer moved past the mark."""
    moved = {uid for uid, modseq in answered.items() if modseq > mark_modseq}
    if not moved or not moved <= reports.keys():
        return False
    return all(answered.get(uid) == modseq for uid, modseq in reports.items())


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

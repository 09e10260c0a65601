"""Delivery reports among new mail, applied to the submissions they report on (RFC 8621 7).

An EmailSubmission's ``deliveryStatus`` starts as what the SMTP server answered at sending
("queued" for an accepted recipient); what happened next comes back as delivery status
notifications (RFC 3464) in the sender's mailbox. When a catch-up finds new emails in a
folder (not copies of emails it knows: the gateway's own move of a sent draft to Sent is
none), and only then, this looks for reports among them, while the folder is still selected:

1. the account has no submissions: nothing more, not one extra IMAP command;
2. else one ``UID SEARCH`` among the new UIDs for ``Content-Type`` containing "report" (the
   sync fetches no Content-Type of its own: asking every first sync for one more field would
   cost every account octets for the few that send mail through the gateway);
3. the first REPORT_OCTETS of each hit (at most MAX_REPORTS per visit), read off the loop
   when large (gateway.offload), matched by ENVID, else by the returned Message-ID
   (``SubmissionStore.find_for_dsn``), and applied per recipient.

Reports are only ever matched within the account's own store, so a report naming another
user's envelope id finds nothing. Within the account, a report may change only the
recipients the submission has: anyone can mail the user a forged report, but not make up
recipients, and not reach records of other users.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace

from gateway.cache.submissions import Delivered, DeliveryStatus, SubmissionRecord, SubmissionStore
from gateway.imap.connection import ImapConnection
from gateway.imap.errors import CommandFailed
from gateway.imap.fetch import Attr, BodySection, uid_fetch
from gateway.imap.responses.fetch import fetches_by_uid
from gateway.imap.search import Header, Uid
from gateway.imap.sequence import UidSet
from gateway.mime.bodyparts import parse_cost
from gateway.mime.dsn import REPORT_OCTETS, DeliveryReport, RecipientReport, parse_report
from gateway.offload import sized

log = logging.getLogger(__name__)

# Reports read per folder visit: a folder that received more at once (a mail loop, a flood of
# forged reports) has the ones with the highest UIDs read; the others stay ordinary mail.
MAX_REPORTS = 100
# Reports fetched per UID FETCH: REPORT_OCTETS each at most, so a few MB per answer.
FETCH_CHUNK = 16
# Report blob ids one submission keeps (RFC 8621 7 dsnBlobIds): a few per recipient is what
# real servers send; past this, later reports still update the statuses.
MAX_DSN_BLOBS = 100

_REPORT_SECTION = BodySection(partial=(0, REPORT_OCTETS))

# RFC 3464 2.3.3 Action -> RFC 8621 7 delivered. "delayed" leaves the recipient as it is
# (queued): a later report says how it ended.
_DELIVERED: Mapping[str, Delivered] = {
    "delivered": "yes",
    "relayed": "yes",
    "expanded": "yes",
    "failed": "no",
}


class DeliveryReports:
    """One catch-up's look for reports; :meth:`arrived` per folder visit with new mail."""

    def __init__(self, store: SubmissionStore, blob_id: Callable[[str], str]) -> None:
        """``blob_id``: the blob id (as Email/get shows it) of the message with an email id."""
        self._store = store
        self._blob_id = blob_id
        self._expecting: bool | None = None

    async def arrived(self, conn: ImapConnection, new: Mapping[int, str]) -> None:
        """``new``: the selected folder's new messages, UID -> email id (already indexed).

        A command the server refuses ends the look for this folder, not the folder's sync:
        the reports stay ordinary mail, and the index goes on as if none had been looked for.
        """
        if not new or not await self._any_submissions():
            return
        try:
            await self._read(conn, new)
        except CommandFailed as exc:
            log.warning("delivery reports not read in a folder: the server refused: %s", exc)

    async def _read(self, conn: ImapConnection, new: Mapping[int, str]) -> None:
        found = await conn.uid_search(Uid(UidSet.of(new)), Header("Content-Type", "report"))
        uids = sorted(uid for uid in found if uid in new)[-MAX_REPORTS:]
        for start in range(0, len(uids), FETCH_CHUNK):
            chunk = uids[start : start + FETCH_CHUNK]
            result = await conn.execute(uid_fetch(UidSet.of(chunk), [Attr.UID, _REPORT_SECTION]))
            for uid, item in sorted(fetches_by_uid(result.untagged).items()):
                data = item.section(_REPORT_SECTION)
                if uid in new and data:
                    report = await sized(parse_cost(data), parse_report, data)
                    if report is not None:
                        await self._apply(report, self._blob_id(new[uid]))

    async def _any_submissions(self) -> bool:
        """Asked once per catch-up, and only when some folder has new mail."""
        if self._expecting is None:
            self._expecting = await self._store.count() > 0
        return self._expecting

    async def _apply(self, report: DeliveryReport, blob_id: str) -> None:
        record = await self._store.find_for_dsn(report.envid, report.message_id)
        if record is None:
            return

        def change(current: SubmissionRecord) -> SubmissionRecord | None:
            # Only a sent submission gets reports, and each report counts once.
            if current.undo_status != "final" or blob_id in current.dsn_blob_ids:
                return None
            return apply_report(current, report, blob_id)

        # Read, changed and written in one transaction: reports applied at once all land.
        if await self._store.update(record.id, change) is not None:
            log.debug("delivery report %s applied to submission %s", blob_id, record.id)


def apply_report(
    record: SubmissionRecord, report: DeliveryReport, blob_id: str
) -> SubmissionRecord | None:
    """``record`` after ``report`` (held in the blob ``blob_id``); None when the report names
    none of its recipients, so it is not this submission's (or is forged)."""
    statuses = dict(record.delivery_status or {})
    by_address = {address.lower(): address for address in statuses}
    touched = False
    for recipient in report.recipients:
        address = _address_of(recipient, by_address)
        if address is not None:
            statuses[address] = _status_after(statuses[address], recipient)
            touched = True
    if not touched:
        return None
    blobs = record.dsn_blob_ids
    if len(blobs) < MAX_DSN_BLOBS:
        blobs = (*blobs, blob_id)
    return replace(record, delivery_status=statuses, dsn_blob_ids=blobs)


def _address_of(recipient: RecipientReport, by_address: Mapping[str, str]) -> str | None:
    """The submission's recipient a block reports on: the address it was sent to (ORCPT,
    RFC 3461 4.2, which the report returns as Original-Recipient), else the final one.
    Compared without case: servers rewrite the case of domains, and mostly of local parts."""
    for candidate in (recipient.original_recipient, recipient.final_recipient):
        if candidate is not None and candidate.lower() in by_address:
            return by_address[candidate.lower()]
    return None


def _status_after(current: DeliveryStatus, recipient: RecipientReport) -> DeliveryStatus:
    delivered = _DELIVERED.get(recipient.action)
    if delivered is None:
        # "delayed": still queued; an earlier final answer is not taken back by a late delay.
        if current.delivered in ("yes", "no"):
            return current
        return replace(current, smtp_reply=recipient.smtp_reply, delivered="queued")
    return replace(current, smtp_reply=recipient.smtp_reply, delivered=delivered)

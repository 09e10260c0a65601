"""The Redis key layout, in one place.

Server-wide keys start with ``jg:``. Every key of one account starts with ``jg:{<accountId>}:``:
the braces are a Redis Cluster hash tag, so all of an account's keys live in one slot and one
account's updates can run atomically (MULTI or Lua) on a single node or on a cluster alike.

=====================================  ======  =====================================================
key                                    type    holds
=====================================  ======  =====================================================
``jg:secret``                          string  server secret for keyed hashes, when not configured
``jg:discovered:<name>``               string  a fact learnt from an upstream server, JSON (e.g.
                                               ``smtp-extensions``: the submission server's EHLO)
``jg:login-failures:address:<d>``      string  failed logins from one client address (or IPv6
                                               /64) in the current window, expiring with it;
                                               ``<d>`` a keyed digest, never the address
``jg:login-failures:user:<d>``         string  the same for one user name
``jg:login-known:<d>``                 string  present while a user logged in successfully from an
                                               address lately (digest of both)
``jg:{a}:meta``                        hash    ``epoch``: written when the account's index is made;
                                               ``floor:<Type>``: states before this modseq
                                               cannot be calculated from (log pruned, or
                                               none kept: the first indexing);
                                               ``email-indexed``: the email index was complete
                                               once; ``index-format``: its layout's version
``jg:{a}:state``                       hash    data type -> the account's modseq for that type
``jg:{a}:changed:<Type>``              zset    id -> modseq of its last change
``jg:{a}:born:<Type>``                 zset    id -> modseq at which it was first created
``jg:{a}:dead:<Type>``                 zset    id -> modseq at which it was destroyed (tombstone)
``jg:{a}:lapse-from:<Type>``           zset    id -> modseq of the destruction its last revival
                                               ended; ``lapse-to``: of that revival
``jg:{a}:full:<Type>``                 zset    id -> modseq of its last change beyond minor
                                               properties (Mailbox: anything but counts)
``jg:{a}:mailboxes``                   hash    mailbox id -> msgpack record (see mailboxes.py)
``jg:{a}:mailbox-names``               hash    IMAP name -> mailbox id, when ids are the
                                               gateway's own (no OBJECTID, no X-GUID)
``jg:{a}:sort-order``                  hash    mailbox id -> sortOrder set by a client
``jg:{a}:records:<n>``                 hash    email id -> msgpack record: thread, receivedAt, size,
                                               then (mailbox number, uid, flags) per copy
                                               (emails.py); n a bucket by linear hashing of
                                               the id (record_buckets.py; meta
                                               ``records-level``, ``-split``, ``-count``)
``jg:{a}:mailbox-numbers``             hash    mailbox id -> its number in the records; ``*``:
                                               the table's generation, ``+``: the last number
                                               given (mailbox_numbers.py)
``jg:{a}:emails``                      hash    index format 2 only (index_format.py removes it):
                                               email id -> record naming mailboxes by id
``jg:{a}:uids:<mailboxId>:<n>``        hash    uid -> email id, for the folder's current
                                               UIDVALIDITY, of the uids n*128 to n*128+127
                                               (small: Redis's compact listpack encoding)
``jg:{a}:uid-buckets:<mailboxId>``     set     the n of the folder's ``uids`` hashes
``jg:{a}:uids-old:<mailboxId>``        hash    the uid map of an earlier UIDVALIDITY (or a deleted
                                               folder) until its copies are removed
``jg:{a}:folder-marks``                hash    mailbox id -> how far the email index followed it
``jg:{a}:threads:<n>``                 hash    a bucket of the thread table (thread_table.py): per
                                               thread T its head ``T`` (unread, members per
                                               mailbox number, first members), member chunks
                                               ``<k>.T``, and for the gateway's own threads its
                                               links ``r.T`` (records, subject digest, ref
                                               hashes); n by linear hashing of T (meta
                                               ``threads-level``, ``-split``, ``-count``,
                                               ``-heads``); every value <= 64 octets
``jg:{a}:threads``                     hash    index format 3 only (index_format.py removes it)
``jg:{a}:dated#<n>``                   zset    a chunk (at most 128 members, one range of the
                                               order) of the chunked set ``dated``: visible
                                               email id -> receivedAt, every email by date
                                               (chunked_set.py); ``dated#d``: its directory,
                                               chunk's lowest score -> "<lowest id>\\0<n>";
                                               ``dated#m`` (hash): ``n`` its count, ``next``
``jg:{a}:dated:<mailboxId>#<n|d|m>``   zset    the same chunked set for the emails a folder holds
``jg:{a}:unseen:<mailboxId>#<n|d|m>``  zset    chunked: a folder's visible emails without $seen
                                               -> receivedAt (query_index.py: "unread in a
                                               folder")
``jg:{a}:flagged[:<m>]#<n|d|m>``       zset    chunked: visible emails with $flagged ->
                                               receivedAt: the account's, or one folder's
``jg:{a}:sized:<mailboxId>``           zset    a folder's emails -> size, built when a client first
                                               sorts it by size, expiring when unused
``jg:{a}:sized-build:<m>:<token>``     zset    a size order being built, renamed into place
``jg:{a}:counts``                      hash    "<mailbox id>:<e|u|t|r>" -> totalEmails,
                                               unreadEmails, totalThreads, unreadThreads
``jg:{a}:thread-refs:<n>``             hash    Message-ID digest -> thread id, when threads are
                                               the gateway's own (no THREADID upstream); n a
                                               bucket by linear hashing of the digest (meta
                                               ``refs-level``, ``refs-split``, ``refs-count``)
``jg:{a}:thread-subjects``             hash    index format 3 only (index_format.py removes it)
``jg:{a}:thread-members``              hash    index format 3 only (index_format.py removes it)
``jg:{a}:thread-keys:<threadId>``      set     index format 1 only (index_format.py removes it):
                                               the thread-refs keys pointing at the thread
``jg:{a}:cache:<kind>``                hash    email id -> immutable data fetched once: header
                                               fields, whole header, body structure, preview
``jg:{a}:text:<emailId>``              string  decoded text of the email's text parts read lately,
                                               expiring (translators/email/values.py)
``jg:{a}:caught-up:<format>``          string  present while the account's last catch-up is recent
                                               (GATEWAY_SYNC_INTERVAL_SECONDS)
``jg:{a}:lock:<name>``                 string  a short lease serialising one kind of work on
                                               the account's index (locks.IndexWork)
``jg:{a}:inflight:<kind>``             zset    request token -> start time (ms), for limits of
                                               concurrent requests across replicas
``jg:{a}:identities``                  hash    identity id -> msgpack record (identities.py): the
                                               stored Identities, cached from METADATA where
                                               the upstream has it (``meta`` field
                                               ``identities-loaded`` while the copy is whole)
``jg:{a}:upload:<blobId>``             string  an uploaded blob's octets, until it expires
``jg:{a}:partial:<token>``             string  an upload still arriving (renamed when complete)
``jg:{a}:uploads``                     zset    "upload:<blobId>", "partial:<token>" -> expiry
                                               (ms): the uploads charged to the quota
``jg:{a}:upload-charges``              hash    the same members -> octets charged; ``*``: total
``jg:{a}:submissions``                 hash    EmailSubmission id -> msgpack record (submissions.py)
``jg:{a}:submissions-finished``        zset    id of a final or canceled submission -> when it
                                               became so (s): retention and the per-account bound
``jg:{a}:submission-refs``             hash    "e:<ENVID, lower case>", "m:<Message-ID>" -> the
                                               submission id sent with it (DSN matching)
``jg:{a}:held:<submissionId>``         string  a held submission's octets, until sent or canceled
                                               (held.py)
``jg:{a}:held-charges``                hash    held submission id -> octets; ``*``: total
``jg:{a}:push``                        pubsub  the channel the account's state changes are
                                               announced on (sharded on a cluster; pushbus.py)
``jg:{a}:push-demand``                 zset    replica id -> until when (s) it has push listeners
                                               of the account (watches.py)
``jg:{a}:push-watch``                  string  "<replica id>:<token>": the lease of the replica
                                               watching the account upstream (watches.py)
``jg:{schedule}:due``                  zset    "<accountId>/<submissionId>" -> when (ms) it is
                                               due: its release, or its lease's end while
                                               sending (schedule.py; one slot on a cluster)
``jg:{schedule}:entries``              hash    the same members -> JSON: user name, lease
                                               token, attempts, "." marked, canceled
=====================================  ======  =====================================================
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "jg"
# The layout of an account's email index this code reads and writes (cache/index_format.py).
INDEX_FORMAT = 4
# The account's meta field naming the format its email index was written in.
INDEX_FORMAT_FIELD = "index-format"
SECRET = f"{PREFIX}:secret"


def discovered(name: str) -> str:
    """A fact learnt from an upstream server, kept for replicas that cannot ask it."""
    return f"{PREFIX}:discovered:{name}"


def login_failures(kind: str, digest: str) -> str:
    """Failed logins of one client address (``kind`` "address") or user name ("user")."""
    return f"{PREFIX}:login-failures:{kind}:{digest}"


def login_known(digest: str) -> str:
    """Set while a user name logged in successfully from an address lately."""
    return f"{PREFIX}:login-known:{digest}"


@dataclass(frozen=True)
class AccountKeys:
    """The names of one account's keys; all share the account's hash tag."""

    account_id: str

    @property
    def base(self) -> str:
        return f"{PREFIX}:{{{self.account_id}}}"

    @property
    def meta(self) -> str:
        return f"{self.base}:meta"

    @property
    def state(self) -> str:
        return f"{self.base}:state"

    def changed(self, data_type: str) -> str:
        return f"{self.base}:changed:{data_type}"

    def born(self, data_type: str) -> str:
        return f"{self.base}:born:{data_type}"

    def dead(self, data_type: str) -> str:
        return f"{self.base}:dead:{data_type}"

    def lapse_from(self, data_type: str) -> str:
        return f"{self.base}:lapse-from:{data_type}"

    def lapse_to(self, data_type: str) -> str:
        return f"{self.base}:lapse-to:{data_type}"

    def full(self, data_type: str) -> str:
        return f"{self.base}:full:{data_type}"

    @property
    def mailboxes(self) -> str:
        return f"{self.base}:mailboxes"

    @property
    def mailbox_names(self) -> str:
        return f"{self.base}:mailbox-names"

    @property
    def sort_order(self) -> str:
        return f"{self.base}:sort-order"

    @property
    def emails(self) -> str:
        """Index format 2's one hash of email records (index_format.py removes it)."""
        return f"{self.base}:emails"

    def record_bucket(self, bucket: int | str) -> str:
        """A bucket of the email records (record_buckets.py)."""
        return f"{self.base}:records:{bucket}"

    @property
    def mailbox_numbers(self) -> str:
        return f"{self.base}:mailbox-numbers"

    def uids(self, mailbox_id: str) -> str:
        """Index format 1's uid map of a folder, one hash (index_format.py removes it)."""
        return f"{self.base}:uids:{mailbox_id}"

    def uid_bucket(self, mailbox_id: str, bucket: int) -> str:
        """The uid -> email id hash of a folder's uids ``bucket * UID_BUCKET`` onwards."""
        return f"{self.uids(mailbox_id)}:{bucket}"

    def uid_buckets(self, mailbox_id: str) -> str:
        return f"{self.base}:uid-buckets:{mailbox_id}"

    def old_uids(self, mailbox_id: str) -> str:
        return f"{self.base}:uids-old:{mailbox_id}"

    @property
    def folder_marks(self) -> str:
        return f"{self.base}:folder-marks"

    @property
    def threads(self) -> str:
        """Index format 3's one hash of threads (index_format.py removes it)."""
        return f"{self.base}:threads"

    def thread_bucket(self, bucket: int | str) -> str:
        """A bucket of the thread table (thread_table.py)."""
        return f"{self.base}:threads:{bucket}"

    def dated(self, mailbox_id: str | None = None) -> str:
        """Emails by receivedAt: all of the account's, or one folder's."""
        return f"{self.base}:dated" if mailbox_id is None else f"{self.base}:dated:{mailbox_id}"

    @property
    def counts(self) -> str:
        return f"{self.base}:counts"

    @property
    def thread_refs(self) -> str:
        """Index format 1's one hash of Message-ID keys (index_format.py removes it)."""
        return f"{self.base}:thread-refs"

    def thread_ref_bucket(self, bucket: int | str) -> str:
        """A bucket of the Message-ID keys -> thread map (thread_links.py)."""
        return f"{self.base}:thread-refs:{bucket}"

    @property
    def thread_subjects(self) -> str:
        """Index format 3's subjects hash (index_format.py removes it)."""
        return f"{self.base}:thread-subjects"

    @property
    def thread_members(self) -> str:
        """Index format 3's record counts and ref keys (index_format.py removes it)."""
        return f"{self.base}:thread-members"

    def thread_keys(self, thread_id: str) -> str:
        return f"{self.base}:thread-keys:{thread_id}"

    def immutable(self, kind: str) -> str:
        return f"{self.base}:cache:{kind}"

    def texts(self, email_id: str) -> str:
        return f"{self.base}:text:{email_id}"

    @property
    def caught_up(self) -> str:
        """Named after the index format, so a mark a gateway of another format wrote (during
        an upgrade) is not taken for this format's index being recent."""
        return f"{self.base}:caught-up:{INDEX_FORMAT}"

    def lock(self, name: str) -> str:
        return f"{self.base}:lock:{name}"

    def inflight(self, kind: str) -> str:
        return f"{self.base}:inflight:{kind}"

    @property
    def identities(self) -> str:
        return f"{self.base}:identities"

    def upload(self, blob_id: str) -> str:
        return f"{self.base}:upload:{blob_id}"

    def partial(self, token: str) -> str:
        return f"{self.base}:partial:{token}"

    @property
    def uploads(self) -> str:
        return f"{self.base}:uploads"

    @property
    def upload_charges(self) -> str:
        return f"{self.base}:upload-charges"

    @property
    def submissions(self) -> str:
        return f"{self.base}:submissions"

    @property
    def submissions_finished(self) -> str:
        return f"{self.base}:submissions-finished"

    @property
    def submission_refs(self) -> str:
        return f"{self.base}:submission-refs"

    def held(self, submission_id: str) -> str:
        return f"{self.base}:held:{submission_id}"

    @property
    def held_charges(self) -> str:
        return f"{self.base}:held-charges"

    @property
    def push_demand(self) -> str:
        return f"{self.base}:push-demand"

    @property
    def push_watch(self) -> str:
        return f"{self.base}:push-watch"

    @property
    def push_channel(self) -> str:
        """The pub/sub channel of the account's announcements; its hash tag makes SPUBLISH go
        to the shard holding the account's keys."""
        return f"{self.base}:push"


def push_channel_account(channel: str) -> str | None:
    """The account id of a push channel name, or None for any other name."""
    head, tail = f"{PREFIX}:{{", "}:push"
    if channel.startswith(head) and channel.endswith(tail) and len(channel) > len(head + tail):
        return channel[len(head) : -len(tail)]
    return None

"""What an upstream's refusal means for one object of a /set: IMAP response codes → SetError.

An IMAP server says why it refused a command with a response code (RFC 5530, and its kin:
PARSE of RFC 3501, USEATTR of RFC 6154, TOOBIG of RFC 7889); its human-readable text is for
people, differs between servers and may name mailboxes, so it is never passed on. One table
says, per code, what it means for each kind of upstream work a /set does, and what any other
code (or none) means.

The same code does not always mean the same SetError, because the code says *that* a bound
was hit and only the command says *which*. LIMIT is the clearest case. RFC 5530 defines it as
"an implementation limit of some kind", naming the number of flags on a message or in a
mailbox as examples:

- storing a new message (APPEND): the limit an APPEND runs into is one on the message
  itself (Dovecot's quota_max_mail_size answers ``NO [LIMIT] Mail size is larger than the
  maximum size allowed``), so it is ``tooLarge`` (RFC 8620 5.3);
- changing an existing Email (STORE of flags, COPY, MOVE, EXPUNGE): the limit RFC 5530 has
  in mind is the flags one, so it is ``tooManyKeywords`` (RFC 8621 4.6);
- creating, renaming or deleting a mailbox: a limit on mailboxes, which RFC 8620 5.3
  calls ``overQuota`` ("a server-defined limit on the number ... of objects of this type").

Other codes mean one thing wherever they come (OVERQUOTA, NOPERM), or only make sense for
one kind of work (ALREADYEXISTS, USEATTR and NONEXISTENT name mailboxes; TOOBIG and PARSE a
message); elsewhere they fall to that kind's default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from gateway.imap.errors import CommandFailed
from gateway.jmap.errors import SetError, SetErrorType


class Work(Enum):
    """The kind of upstream work a refusal interrupted."""

    # Mailbox/set: CREATE, RENAME, SUBSCRIBE, DELETE of a folder.
    MAILBOX = "mailbox"
    # Email/set create and Email/import: APPEND of a new message, COPY to its other mailboxes.
    NEW_MESSAGE = "new message"
    # Email/set update and destroy: STORE of flags, COPY, MOVE, EXPUNGE of stored messages.
    EMAIL_CHANGE = "email change"
    # Identity/set: SETMETADATA of the identity's server entry (RFC 5464 4.3).
    IDENTITY = "identity"


@dataclass(frozen=True)
class Refusal:
    """The SetError a refusal becomes; ``property`` is named by invalidProperties."""

    type: SetErrorType
    description: str
    property: str | None = None

    def __post_init__(self) -> None:
        # RFC 8620 5.3: invalidProperties SHOULD list the properties; nothing else lists any.
        if (self.type == "invalidProperties") != (self.property is not None):
            raise ValueError("a property is named by, and only by, invalidProperties")

    def error(self, cause: CommandFailed | None = None) -> SetError:
        if self.property is not None:
            return SetError.invalid_properties([self.property], self.description)
        return SetError(self.type, self.description, cause=cause)


_QUOTA = Refusal("overQuota", "the mail server's quota is exhausted")
_NOT_ALLOWED = Refusal("forbidden", "the mail server does not allow this")
_LIMIT = "the mail server's limit is reached"

# code -> kind of work -> what the refusal means; a kind left out takes OTHERWISE.
REFUSALS: Mapping[str, Mapping[Work, Refusal]] = {
    "OVERQUOTA": dict.fromkeys(Work, _QUOTA),
    "NOPERM": dict.fromkeys(Work, _NOT_ALLOWED),
    # Which limit depends on the command: see the module's docstring.
    "LIMIT": {
        Work.MAILBOX: Refusal("overQuota", _LIMIT),
        Work.IDENTITY: Refusal("overQuota", _LIMIT),
        Work.NEW_MESSAGE: Refusal("tooLarge", _LIMIT),
        Work.EMAIL_CHANGE: Refusal("tooManyKeywords", _LIMIT),
    },
    "ALREADYEXISTS": {
        Work.MAILBOX: Refusal(
            "invalidProperties", "a mailbox with this name already exists", "name"
        ),
    },
    "USEATTR": {
        Work.MAILBOX: Refusal(
            "invalidProperties", "the mail server refuses this role here", "role"
        ),
    },
    "NONEXISTENT": {
        Work.MAILBOX: Refusal("notFound", "the mailbox no longer exists upstream"),
    },
    "TOOBIG": {
        Work.NEW_MESSAGE: Refusal("tooLarge", "the mail server refuses messages this large"),
    },
    "PARSE": {
        Work.NEW_MESSAGE: Refusal("invalidEmail", "the mail server cannot parse the message"),
    },
    # RFC 5464 4.3: SETMETADATA's "[METADATA MAXSIZE n]" (a value too long) and "[METADATA
    # TOOMANY]" (too many entries) both say the server keeps no more of this user's data.
    "METADATA": {
        Work.IDENTITY: Refusal("overQuota", "the mail server keeps no more identity data"),
    },
}

# Any other code, or none: the server will not say why. Mailbox/set has answered that with
# forbidden; the Email work with serverFail, which logs the refusal under an incident id.
OTHERWISE: Mapping[Work, Refusal] = {
    Work.MAILBOX: Refusal("forbidden", "the mail server refused"),
    Work.NEW_MESSAGE: Refusal("serverFail", "the mail server refused the message"),
    Work.EMAIL_CHANGE: Refusal("serverFail", "the mail server refused the change"),
    Work.IDENTITY: Refusal("serverFail", "the mail server refused to keep the identity"),
}


def refusal(code: str | None, work: Work) -> Refusal:
    """What a refusal with response code ``code`` means for ``work``."""
    return REFUSALS.get(code or "", {}).get(work) or OTHERWISE[work]


def refused(exc: CommandFailed, work: Work) -> SetError:
    """The SetError for one object whose upstream command ``exc`` refused; the server's
    own words go to the log only (as the cause of a serverFail)."""
    return refusal(exc.code, work).error(cause=exc)

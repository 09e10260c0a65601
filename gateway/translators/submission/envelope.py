"""The envelope of an EmailSubmission (RFC 8621 7): read from the client, or made from the
message's header fields as 7.5 says, then turned into the SMTP envelope that is sent.

JMAP carries parameters decoded (RFC 8621 7: "any xtext or unitext encodings are removed");
the values that RFC 3461 defines as xtext (ENVID, the address of ORCPT) are encoded again
here for the wire. A parameter goes to the server only if its EHLO advertises the extension
that defines it: one it does not is refused with a SetError naming it, never dropped, since
the client asked for what it would silently not get (HOLDFOR and HOLDUNTIL are the gateway's
own delayed sending when the server has no FUTURERELEASE).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.jmap.errors import SetError
from gateway.mime.headers import RawHeader, as_addresses
from gateway.smtp.envelope import Envelope, Recipient
from gateway.smtp.extensions import Extensions

# RFC 5321 4.5.3.1.3: a path (the address and its angle brackets) is at most 256 octets.
MAX_ADDRESS_OCTETS = 254
# RFC 5321 4.1.2 esmtp-keyword; the parameters one address may carry (real ones use a few).
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*", re.ASCII)
# The SMTP client's bound (16) less the four the gateway may add to MAIL.
MAX_PARAMETERS = 12
MAX_PARAMETER_OCTETS = 1000
# RFC 3461 4.2, 4.4: the parameters whose values are xtext, encoded when sent.
_XTEXT_VALUES = frozenset({"ORCPT", "ENVID"})
# RFC 3461 4: xtext is printable ASCII but "+" and "="; others are "+" and two hex digits.
_XTEXT_PLAIN = frozenset(range(0x21, 0x7F)) - {ord("+"), ord("=")}
# The extension (RFC 5321 2.2.2) each parameter belongs to, where its name is not the
# extension's: a parameter is sent only where EHLO advertised it.
_EXTENSION_OF = {
    "BODY": "8BITMIME",  # RFC 6152; BINARYMIME needs BDAT, which the gateway does not send
    "RET": "DSN",  # RFC 3461 4.3
    "ENVID": "DSN",  # RFC 3461 4.4
    "NOTIFY": "DSN",  # RFC 3461 4.1
    "ORCPT": "DSN",  # RFC 3461 4.2
    "BY": "DELIVERBY",  # RFC 2852
}
# Set by the gateway itself from the message (SIZE, BODY) or the submission (ENVID): the
# client's values, once known to be supported, are replaced.
_GATEWAY_SET = frozenset({"SIZE", "BODY", "ENVID"})
# RFC 4865: delayed sending, the gateway's own business (the hold part of /set).
HOLD_PARAMETERS = frozenset({"HOLDFOR", "HOLDUNTIL"})


@dataclass(frozen=True)
class Address:
    """An Address of an Envelope (RFC 8621 7): the mailbox and its decoded parameters."""

    email: str
    parameters: Mapping[str, str | None] | None = None

    def to_json(self) -> dict[str, Any]:
        params = None if self.parameters is None else dict(self.parameters)
        return {"email": self.email, "parameters": params}

    def parameter(self, name: str) -> str | None:
        """A parameter's value by its case-insensitive name (RFC 5321 2.4)."""
        for key, value in (self.parameters or {}).items():
            if key.upper() == name:
                return value
        return None

    def has(self, name: str) -> bool:
        return any(key.upper() == name for key in self.parameters or {})


@dataclass(frozen=True)
class SubmissionEnvelope:
    """RFC 8621 7 Envelope: mailFrom and rcptTo."""

    mail_from: Address
    rcpt_to: tuple[Address, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "mailFrom": self.mail_from.to_json(),
            "rcptTo": [address.to_json() for address in self.rcpt_to],
        }


def valid_mailbox(address: str) -> bool:
    """A Mailbox of RFC 5321 4.1.2 as far as a submission server's first look goes: one
    local part and one domain, no white space, controls or angle brackets, within the
    length of a path. Non-ASCII is allowed (RFC 6531 SMTPUTF8); the server judges the rest."""
    if not address or len(address.encode()) > MAX_ADDRESS_OCTETS:
        return False
    if any(c.isspace() or ord(c) < 0x20 or c in "<>\x7f" for c in address):
        return False
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain) and not domain.startswith(".") and ".." not in domain


def parse_envelope(value: object) -> SubmissionEnvelope:
    """The client's envelope, checked; invalidProperties or invalidRecipients if it is not
    one (RFC 8621 7.5: invalidRecipients lists the addresses that are not valid)."""
    if not isinstance(value, dict) or set(value) - {"mailFrom", "rcptTo"}:
        raise _bad("must be an object with mailFrom and rcptTo")
    mail_from = _address(value.get("mailFrom"), "mailFrom")
    # RFC 8621 7: the server MAY allow the empty string (the null reverse-path).
    if mail_from.email and not valid_mailbox(mail_from.email):
        raise _bad(f"mailFrom {mail_from.email!r} is not an email address")
    rcpt_to = value.get("rcptTo")
    if not isinstance(rcpt_to, list):
        raise _bad("rcptTo must be an array of Addresses")
    recipients = tuple(_address(item, "rcptTo") for item in rcpt_to)
    seen: set[str] = set()
    for recipient in recipients:
        key = recipient.email.lower()
        if key in seen:
            raise _bad(f"rcptTo lists {recipient.email!r} twice")
        seen.add(key)
    return SubmissionEnvelope(mail_from, recipients)


def _address(value: object, where: str) -> Address:
    if not isinstance(value, dict) or set(value) - {"email", "parameters"}:
        raise _bad(f"{where}: each Address is an object with email and parameters")
    email = value.get("email")
    params = value.get("parameters")
    if not isinstance(email, str):
        raise _bad(f"{where}: email must be a String")
    if params is None:
        return Address(email)
    if not isinstance(params, dict) or len(params) > MAX_PARAMETERS:
        raise _bad(f"{where}: parameters must be an object of at most {MAX_PARAMETERS}")
    for name, param in params.items():
        if not _KEYWORD.fullmatch(name):
            raise _bad(f"{where}: {name!r} is not a parameter name (RFC 5321 4.1.2)")
        if param is not None and (
            not isinstance(param, str)
            or not _printable(param)
            or len(param) > MAX_PARAMETER_OCTETS
            # RFC 5321 4.1.2 esmtp-value has no "="; xtext ones are encoded when sent.
            or ("=" in param and name.upper() not in _XTEXT_VALUES)
        ):
            raise _bad(
                f"{where}: the value of {name} must be a String without spaces, controls or '='"
            )
    return Address(email, dict(params))


def _printable(text: str) -> bool:
    return bool(text) and not any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in text)


def _bad(why: str) -> SetError:
    return SetError.invalid_properties(["envelope"], f"envelope: {why}")


def invalid_recipients(envelope: SubmissionEnvelope) -> list[str]:
    """The rcptTo addresses that are not mailboxes at all (RFC 8621 7.5 invalidRecipients)."""
    return [a.email for a in envelope.rcpt_to if not valid_mailbox(a.email)]


def from_headers(
    headers: Sequence[RawHeader], identity_email: str, allows: Callable[[str], bool]
) -> SubmissionEnvelope:
    """RFC 8621 7.5: the envelope made from the message when the client gives none.

    mailFrom is the first address of the last Sender field, else of the last From field;
    several addresses or fields there are refused as invalidEmail (the SHOULD). An address
    the Identity does not allow (``allows``) is replaced by the Identity's email (the
    MUST). rcptTo is the To, Cc and Bcc addresses, deduplicated (case-insensitively, the
    first spelling kept), with no parameters.
    """
    mail_from = identity_email
    for name in ("sender", "from"):
        fields = [h for h in headers if h.name.lower() == name]
        if not fields:
            continue
        found = as_addresses(fields[-1].value)
        if len(fields) > 1 or len(found) > 1:
            raise SetError(
                "invalidEmail",
                f"the message has more than one {name.title()} address: say which to send "
                "from in the envelope",
                {"properties": [f"header:{name.title()}"]},
            )
        if found and allows(found[0]["email"]):
            mail_from = found[0]["email"]
        break
    recipients: dict[str, Address] = {}
    for header in headers:
        if header.name.lower() in ("to", "cc", "bcc"):
            for address in as_addresses(header.value):
                recipients.setdefault(address["email"].lower(), Address(address["email"]))
    return SubmissionEnvelope(Address(mail_from), tuple(recipients.values()))


def from_addresses(headers: Sequence[RawHeader]) -> list[str]:
    """Every address of the From fields, checked against the sender policy (forbiddenFrom)."""
    return [
        address["email"]
        for header in headers
        if header.name.lower() == "from"
        for address in as_addresses(header.value)
    ]


@dataclass(frozen=True)
class WireFacts:
    """What the message and submission add to the envelope's parameters."""

    size: int
    eight_bit: bool
    utf8_header: bool
    envid: str


def smtp_envelope(
    envelope: SubmissionEnvelope, extensions: Extensions, facts: WireFacts
) -> Envelope:
    """The envelope as sent: the client's parameters, where the server supports them, and the
    gateway's (SIZE=, BODY=8BITMIME, SMTPUTF8, ENVID=<submission id>). Raises SetError for a
    parameter the server does not advertise, or an address it could not take."""
    unsupported = sorted(
        {
            name.upper()
            for address in (envelope.mail_from, *envelope.rcpt_to)
            for name in address.parameters or {}
            if name.upper() not in HOLD_PARAMETERS
            and not extensions.has(_EXTENSION_OF.get(name.upper(), name.upper()))
        }
    )
    if unsupported:
        raise SetError.invalid_properties(
            ["envelope"],
            f"envelope: the SMTP server does not support {', '.join(unsupported)}",
        )
    addresses = [envelope.mail_from.email, *(a.email for a in envelope.rcpt_to)]
    utf8_address = any(not a.isascii() for a in addresses)
    utf8 = facts.utf8_header or utf8_address or envelope.mail_from.has("SMTPUTF8")
    if utf8_address and not extensions.has("SMTPUTF8"):
        # RFC 6531 3.4: a non-ASCII address needs SMTPUTF8 all the way.
        odd = [a.email for a in envelope.rcpt_to if not a.email.isascii()]
        if odd:
            raise SetError(
                "invalidRecipients",
                "the SMTP server does not accept non-ASCII addresses (no SMTPUTF8)",
                {"invalidRecipients": odd},
            )
        raise SetError("forbiddenMailFrom", "the SMTP server does not accept a non-ASCII mailFrom")
    mail = _client_parameters(envelope.mail_from)
    if extensions.has("SIZE"):
        mail["SIZE"] = str(facts.size)  # RFC 1870
    if facts.eight_bit and extensions.has("8BITMIME"):
        mail["BODY"] = "8BITMIME"  # RFC 6152
    if utf8 and extensions.has("SMTPUTF8"):
        mail["SMTPUTF8"] = None  # RFC 6531 3.4
    if extensions.has("DSN"):
        # RFC 8621 7: the server MAY use the submission id as ENVID (F matches DSNs by it).
        mail["ENVID"] = xtext(facts.envid)
    try:
        recipients = tuple(
            Recipient(address.email, _client_parameters(address)) for address in envelope.rcpt_to
        )
        return Envelope(envelope.mail_from.email, mail, recipients)
    except ValueError as refused:
        # The SMTP layer's own bounds on what goes on the wire, should a check here miss one.
        raise _bad(str(refused)) from None


def _client_parameters(address: Address) -> dict[str, str | None]:
    """The client's parameters for the wire: upper-case names, xtext where RFC 3461 says."""
    sent: dict[str, str | None] = {}
    for name, value in (address.parameters or {}).items():
        key = name.upper()
        if key in HOLD_PARAMETERS | _GATEWAY_SET:
            continue
        if key == "ORCPT" and value is not None:
            kind, _, original = value.partition(";")
            value = f"{kind};{xtext(original)}"
        sent[key] = value
    return sent


def xtext(text: str) -> str:
    """RFC 3461 4: xtext encoding of a decoded value (UTF-8 octets outside it as +HH)."""
    return "".join(chr(o) if o in _XTEXT_PLAIN else f"+{o:02X}" for o in text.encode())

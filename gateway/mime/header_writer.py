"""Header fields written from the parsed forms of RFC 8621 4.1.2, for :mod:`gateway.mime.compose`.

Every field written from a parsed form is read back with :mod:`gateway.mime.headers` before it
is accepted, so that what ``Email/get`` will later show is what the client gave; a value that
cannot be written faithfully is refused with ``invalidProperties`` instead of being altered.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import policy as email_policy
from email.header import Header
from email.headerregistry import AddressHeader, HeaderRegistry, UnstructuredHeader
from email.policy import Policy
from email.utils import format_datetime, quote
from typing import Any, Final, Literal, TypeVar

from gateway.mime.headers import (
    HeaderForm,
    HeaderSpec,
    as_addresses,
    as_grouped_addresses,
    as_message_ids,
    as_text,
    as_urls,
)

POLICY: Final = email_policy.default.clone(linesep="\r\n")
CRLF: Final = "\r\n"
# RFC 5322 2.1.1: a line is at most 998 characters, excluding the CRLF.
MAX_LINE: Final = 998

# The stdlib header classes that write each parsed form, whatever the field's name.
_UNSTRUCTURED: Final = HeaderRegistry(default_class=UnstructuredHeader, use_default_map=False)
_ADDRESS: Final = HeaderRegistry(default_class=AddressHeader, use_default_map=False)

# RFC 5322 3.6.4 msg-id without its brackets: dot-atom-text "@" (dot-atom-text / no-fold-literal).
# The same shape is an addr-spec (3.4.1) that needs no quoting, so it can go without "<>".
_ATEXT: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]+"
_ID_AT_DOMAIN: Final = re.compile(rf"{_ATEXT}@(?:{_ATEXT}|\[[!-Z^-~]*\])")
# RFC 2369 URLs and RFC 2557 Content-Location: printable ASCII, nothing that ends them.
URI: Final = re.compile(r"[!-;=?-~]+")
# Characters RFC 5322 3.2.5 does not allow in header text (tab aside).
_CONTROLS: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 8620 1.4 Date (RFC 3339 date-time); fractions are dropped, RFC 5322 has none.
_DATE: Final = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_SPACES: Final = re.compile(" {2,}")
# Inside a Raw value a line break must be folding: CRLF then WSP (RFC 5322 2.2.3).
_FOLDING: Final = re.compile(r"\r\n(?=[ \t])")

_T = TypeVar("_T")


# The RFC 8620 5.3 and RFC 8621 4.6 SetError types a create can fail with (this layer knows
# no JMAP module; the translator hands the type on, and mypy checks it is one of JMAP's).
ComposeErrorType = Literal["invalidProperties", "blobNotFound", "tooLarge"]


class ComposeError(Exception):
    """Why a create cannot become a message; ``type`` is the SetError type."""

    def __init__(
        self,
        type: ComposeErrorType,
        description: str = "",
        *,
        properties: Sequence[str] = (),
        not_found: Sequence[str] = (),
    ) -> None:
        super().__init__(description or type)
        self.type = type
        self.properties = list(properties)
        self.not_found = list(not_found)
        self.description = description or type


class Invalid(Exception):
    """A property value that cannot be written; the text says why."""


# --- Collected problems ------------------------------------------------------------------------


@dataclass(slots=True)
class Check:
    """What is wrong so far: every invalid property, every missing blob, the blob octets."""

    blobs: Mapping[str, bytes]
    invalid: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    blob_octets: int = 0

    def bad(self, path: str, reason: str) -> None:
        self.invalid.setdefault(path, reason)

    def blob(self, blob_id: str) -> bytes:
        content = self.blobs.get(blob_id)
        if content is None:
            if blob_id not in self.missing:
                self.missing.append(blob_id)
            return b""
        self.blob_octets += len(content)
        return content

    def value(
        self, obj: Mapping[str, Any], path: str, key: str, read: Callable[[Any], _T]
    ) -> _T | None:
        """obj[key] through ``read``, or None when absent, null or invalid (then noted)."""
        raw = obj.get(key)
        if raw is None:
            return None
        try:
            return read(raw)
        except Invalid as error:
            self.bad(f"{path}/{key}", str(error))
            return None

    def raise_errors(self, max_attachments_size: int) -> None:
        """RFC 8621 4.6: invalidProperties first, then blobNotFound, then the size limit."""
        if self.invalid:
            reasons = "; ".join(f"{path}: {why}" for path, why in self.invalid.items())
            raise ComposeError("invalidProperties", reasons, properties=list(self.invalid))
        if self.missing:
            raise ComposeError(
                "blobNotFound", "no such blob: " + ", ".join(self.missing), not_found=self.missing
            )
        # RFC 8621 1.3.1 maxSizeAttachmentsPerEmail: the sum of the unencoded sizes.
        if self.blob_octets > max_attachments_size:
            raise ComposeError(
                "tooLarge",
                f"the attachments total {self.blob_octets} octets, "
                f"more than the {max_attachments_size} allowed",
            )


# --- Header fields -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One header field: its value is every octet after the colon, folding included."""

    name: str
    value: str
    source: str  # the property that gave it, for invalidProperties


class Verbatim(str):
    """A header value the generator writes exactly as it is (the stdlib always adds ": ").

    ``EmailPolicy.fold_binary`` calls ``fold`` on any value with a ``name`` and encodes the
    result as ASCII with surrogateescape, so UTF-8 (RFC 6532) goes out as surrogates.
    """

    name: str

    def __new__(cls, name: str, value: str) -> Verbatim:
        self = super().__new__(cls, value)
        self.name = name
        return self

    def fold(self, *, policy: Policy) -> str:
        line = f"{self.name}:{self}{policy.linesep}"
        return line.encode("utf-8").decode("ascii", "surrogateescape")


def header_fields(spec: HeaderSpec, value: Any, source: str, check: Check) -> list[Field]:
    """The fields one header property asks for (several with ":all"); [] if it is invalid."""
    try:
        instances = _instances(spec, value)
        written = (_WRITERS[spec.form](spec.name, instance) for instance in instances)
        fields = [Field(spec.name, raw, source) for raw in written if raw is not None]
        for header in fields:
            check_lines(header.name, header.value)
    except Invalid as error:
        check.bad(source, str(error))
        return []
    return fields


def _instances(spec: HeaderSpec, value: Any) -> list[Any]:
    """RFC 8621 4.1.3: with ":all" the value is a list, one item per field; null writes none."""
    if not spec.all:
        return [value]
    if not isinstance(value, list):
        raise Invalid("a list is expected with :all")
    return [item for item in value if item is not None]


def check_lines(name: str, value: str) -> None:
    """Every line break is folding and no line exceeds RFC 5322 2.1.1's 998 octets."""
    if "\x00" in value:
        raise Invalid("NUL is not allowed in a header field")
    lines = _FOLDING.split(value)
    if any("\r" in line or "\n" in line for line in lines):
        raise Invalid("a line break must be followed by white space (folding)")
    if any(not line.strip(" \t") for line in lines[1:]):
        raise Invalid("a folded line must not be only white space")
    lengths = [len(line.encode("utf-8")) for line in lines]
    lengths[0] += len(name) + 1
    if max(lengths) > MAX_LINE:
        raise Invalid(f"a line of this header field would exceed {MAX_LINE} octets")


def _fold(registry: HeaderRegistry, name: str, value: Any) -> str:
    """The stdlib's folded and encoded value of a field, as the octets after its colon."""
    folded = registry(name, value).fold(policy=POLICY)
    return folded[len(name) + 1 :].removesuffix(CRLF)


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise Invalid(f"{what} cannot be written so that it reads back the same")


def text_value(value: Any, what: str) -> str:
    """A string for a header, tabs made spaces; no other control has a place in one.

    RFC 5322 3.2.5 allows no controls but tab, and RFC 8621 4.1.2.2 drops controls from
    encoded-words, so a tab in non-ASCII text could not read back: it is a space instead.
    """
    if not isinstance(value, str):
        raise Invalid(f"{what} must be a string")
    if _CONTROLS.search(value):
        raise Invalid(f"{what} must not contain control characters or line breaks")
    return value.replace("\t", " ")


def _write_raw(name: str, value: Any) -> str:
    """RFC 8621 4.1.2.1 Raw: kept exactly; check_lines refuses what would break the block."""
    if not isinstance(value, str):
        raise Invalid("the Raw form is a string")
    return value


def _write_text(name: str, value: Any) -> str:
    """RFC 8621 4.1.2.2 Text, RFC 2047-encoded where needed.

    The registry leaves ASCII as it is, including text that looks like an encoded-word and
    would be decoded by readers; then the whole value is encoded instead.
    """
    text = text_value(value, "the text")
    expected = unicodedata.normalize("NFC", text).lstrip(" ")
    for candidate in (_fold(_UNSTRUCTURED, name, text), _encoded_words(name, text)):
        if as_text(candidate).lstrip(" ") == expected and _well_folded(name, candidate):
            return candidate
    raise Invalid("the text cannot be written so that it reads back the same")


def _encoded_words(name: str, text: str) -> str:
    """The text entirely as RFC 2047 encoded-words, folded between them."""
    return " " + Header(text, "utf-8", header_name=name).encode(linesep=CRLF)


def _well_folded(name: str, value: str) -> bool:
    try:
        check_lines(name, value)
    except Invalid:
        return False
    return True


# --- Addresses ---------------------------------------------------------------------------------


def _display_name(name: str | None) -> str | None:
    """A name as RFC 8621 4.1.2.3 reads it back: trimmed, NFC, null when empty.

    Runs of spaces become one: the stdlib writes a non-ASCII name as encoded-words and atoms,
    and readers join a phrase's words with single spaces.
    """
    trimmed = _SPACES.sub(" ", name or "").strip(" ")
    return unicodedata.normalize("NFC", trimmed) if trimmed else None


def _address(value: Any) -> dict[str, Any]:
    """An EmailAddress object (RFC 8621 4.1.2.3) with its name normalised as it reads back."""
    if not isinstance(value, Mapping) or not set(value) <= {"name", "email"}:
        raise Invalid("an EmailAddress is an object with name and email")
    name = value.get("name")
    if name is not None:
        name = text_value(name, "a name")
    email = text_value(value.get("email"), "an email")
    if not email.isascii() or "<" in email or ">" in email:
        raise Invalid("an email must be ASCII without angle brackets")
    return {"name": _display_name(name), "email": email}


def _address_list(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise Invalid("an EmailAddress list is expected")
    return [_address(item) for item in value]


def _mailbox_text(address: Mapping[str, Any]) -> str:
    """A name-addr the stdlib parses and refolds; it drops quotes that are not needed."""
    name, email = address["name"], address["email"]
    if name is None:
        # A draft's address may be anything (RFC 8621 4.6); "<>" keeps it one mailbox.
        return email if _ID_AT_DOMAIN.fullmatch(email) else f"<{email}>"
    return f'"{quote(name)}" <{email}>'


def _folded_mailbox(name: str, address: Mapping[str, Any]) -> str:
    """One mailbox folded by the stdlib on its own, its name as encoded-words if need be.

    Python 3.11's folder, given a whole list with long non-ASCII names, can encode the
    separating comma into an encoded-word, merging mailboxes, so lists are folded an item a
    line. Splitting a long name into encoded-words, it can leave a space between them, where
    readers drop it (RFC 2047 6.2); such a name is encoded whole by ``Header`` instead.
    """
    folded = _fold(_ADDRESS, name, _mailbox_text(address)).removeprefix(CRLF)
    if address["name"] is None or as_addresses(folded) == [address]:
        return folded
    return f"{_phrase_words(name, address['name'])} <{address['email']}>"


def _folded_group(name: str, group: Mapping[str, Any]) -> list[str]:
    """A group's items: its mailboxes if it has no name, else "name:" mailboxes ";"."""
    mailboxes = [_folded_mailbox(name, address) for address in group["addresses"]]
    if group["name"] is None:
        return mailboxes
    label = _fold(_ADDRESS, name, f'"{quote(group["name"])}":;').removeprefix(CRLF)
    if as_grouped_addresses(label) != [{"name": group["name"], "addresses": []}]:
        label = _phrase_words(name, group["name"]) + ":;"
    if not mailboxes:
        return [label]
    return [label.removesuffix(";") + CRLF + _list(mailboxes) + ";"]


def _phrase_words(name: str, phrase: str) -> str:
    """A display name entirely as RFC 2047 encoded-words, spaces and specials inside them."""
    return " " + Header(phrase, "utf-8", header_name=name).encode(linesep=CRLF)


def _list(items: list[str]) -> str:
    return ("," + CRLF).join(items)


def _write_addresses(name: str, value: Any) -> str | None:
    """RFC 8621 4.1.2.3 Addresses; an empty list writes no field."""
    addresses = _address_list(value)
    if not addresses:
        return None
    raw = _list([_folded_mailbox(name, address) for address in addresses])
    _expect(as_addresses(raw) == addresses, "the address list")
    return raw


def _group(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not set(value) <= {"name", "addresses"}:
        raise Invalid("an EmailAddressGroup is an object with name and addresses")
    name = value.get("name")
    if name is not None:
        name = text_value(name, "a group name")
    return {"name": _display_name(name), "addresses": _address_list(value.get("addresses"))}


def _as_read_back(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """RFC 8621 4.1.2.4: consecutive mailboxes outside groups read back as one null group."""
    merged: list[dict[str, Any]] = []
    for group in groups:
        if group["name"] is None and merged and merged[-1]["name"] is None:
            merged[-1] = {"name": None, "addresses": merged[-1]["addresses"] + group["addresses"]}
        else:
            merged.append(group)
    return [group for group in merged if group["name"] is not None or group["addresses"]]


def _write_grouped(name: str, value: Any) -> str | None:
    """RFC 8621 4.1.2.4 GroupedAddresses; nothing to write when there is no group or mailbox."""
    if not isinstance(value, list):
        raise Invalid("an EmailAddressGroup list is expected")
    groups = _as_read_back([_group(item) for item in value])
    if not groups:
        return None
    raw = _list([item for group in groups for item in _folded_group(name, group)])
    _expect(as_grouped_addresses(raw) == groups, "the address groups")
    return raw


# --- Message ids, dates, URLs ------------------------------------------------------------------


def _write_message_ids(name: str, value: Any) -> str | None:
    """RFC 8621 4.1.2.5 MessageIds: each id without its angle brackets (RFC 5322 3.6.4)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Invalid("a list of message ids is expected")
    if not all(_ID_AT_DOMAIN.fullmatch(item) for item in value):
        raise Invalid("a message id is id-left@id-right without angle brackets (RFC 5322 3.6.4)")
    if not value:
        return None
    raw = _fold(_UNSTRUCTURED, name, " ".join(f"<{item}>" for item in value))
    _expect(as_message_ids(raw) == value, "the message ids")
    return raw


def _date_time(value: Any) -> datetime:
    """An RFC 8620 1.4 Date; "-00:00" (RFC 3339 4.3: offset unknown) becomes a naive time."""
    match = _DATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise Invalid("a Date (RFC 3339 date-time with an offset) is expected")
    date, time, offset = match.groups()
    zone = "" if offset == "-00:00" else "+00:00" if offset in "Zz" else offset
    try:
        return datetime.fromisoformat(f"{date}T{time}{zone}")
    except ValueError:
        raise Invalid("no such date or time") from None


def _write_date(name: str, value: Any) -> str:
    """RFC 8621 4.1.2.6 Date as an RFC 5322 3.3 date-time keeping the given offset."""
    return " " + format_datetime(_date_time(value))


def _write_urls(name: str, value: Any) -> str | None:
    """RFC 8621 4.1.2.7 URLs: RFC 2369's comma-separated "<url>" list."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Invalid("a list of URLs is expected")
    if not all(URI.fullmatch(item) for item in value):
        raise Invalid("a URL is printable ASCII without spaces or angle brackets")
    if not value:
        return None
    raw = _fold(_UNSTRUCTURED, name, ", ".join(f"<{item}>" for item in value))
    _expect(as_urls(raw) == value, "the URLs")
    return raw


_WRITERS: Final[Mapping[HeaderForm, Callable[[str, Any], str | None]]] = {
    HeaderForm.RAW: _write_raw,
    HeaderForm.TEXT: _write_text,
    HeaderForm.ADDRESSES: _write_addresses,
    HeaderForm.GROUPED_ADDRESSES: _write_grouped,
    HeaderForm.MESSAGE_IDS: _write_message_ids,
    HeaderForm.DATE: _write_date,
    HeaderForm.URLS: _write_urls,
}


def flag_duplicates(named: Iterable[tuple[str, str]], check: Check) -> None:
    """RFC 8621 4.6: no two properties may give the same header field (names are caseless)."""
    sources: dict[str, list[str]] = {}
    for name, source in named:
        seen = sources.setdefault(name.lower(), [])
        if source not in seen:
            seen.append(source)
    for name, props in sources.items():
        for prop in props if len(props) > 1 else ():
            check.bad(prop, f"{name} is given by several properties: {', '.join(props)}")

"""Email/query filters and sorts (RFC 8621 4.4.1, 4.4.2): parsed, checked, and evaluated.

Conditions the index answers (folders, dates, sizes, keywords, thread keywords) are evaluated
here on the records. Conditions on the message's text are the upstream's to answer: every
part of the filter made of text conditions alone (a single one, or an AND, OR or NOT of
several) becomes one :class:`TextSearch`, which one IMAP SEARCH per folder answers
(gateway.translators.email.search), its results a set of email ids under the search's key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeAlias, cast

from gateway.cache.emails import EmailRecord
from gateway.jmap.errors import MethodError
from gateway.jmap.query import collation_key, resolve_collation
from gateway.jmap.standard import Comparator, InvalidValue, as_utc_date, check_filter
from gateway.translators.keywords import SYSTEM_FLAGS, is_valid_keyword

INDEX_CONDITIONS: Final = frozenset(
    {
        "inMailbox",
        "inMailboxOtherThan",
        "before",
        "after",
        "minSize",
        "maxSize",
        "allInThreadHaveKeyword",
        "someInThreadHaveKeyword",
        "noneInThreadHaveKeyword",
        "hasKeyword",
        "notKeyword",
        "hasAttachment",
    }
)
# Conditions on the message's text and the IMAP SEARCH key each becomes (RFC 3501 6.4.4).
TEXT_CONDITIONS: Final = {
    "text": "TEXT",
    "from": "FROM",
    "to": "TO",
    "cc": "CC",
    "bcc": "BCC",
    "subject": "SUBJECT",
    "body": "BODY",
    "header": "HEADER",
}
INDEX_SORTS: Final = frozenset(
    {"receivedAt", "size", "hasKeyword", "allInThreadHaveKeyword", "someInThreadHaveKeyword"}
)
HEADER_SORTS: Final = frozenset({"from", "to", "subject", "sentAt"})
SORTS: Final = INDEX_SORTS | HEADER_SORTS
KEYWORD_SORTS: Final = frozenset(
    {"hasKeyword", "allInThreadHaveKeyword", "someInThreadHaveKeyword"}
)


@dataclass(frozen=True)
class Leaf:
    """One property of a FilterCondition."""

    name: str
    value: Any


@dataclass(frozen=True)
class Node:
    operator: str  # AND, OR, NOT
    children: tuple[Filter, ...]


@dataclass(frozen=True)
class TextSearch:
    """A part of the filter of text conditions only, answered by one SEARCH per folder;
    ``key`` names its results."""

    tree: Node | Leaf
    key: int


Filter: TypeAlias = Node | Leaf | TextSearch

# RFC 8620 5.5 unsupportedFilter past these: every word is a SEARCH key the upstream matches
# against every message of a folder (and a pattern SearchSnippet/get marks), and a text is
# sent as a literal. A search box gives a few words; these leave room for long queries.
MAX_SEARCH_TERMS = 64
MAX_SEARCH_TEXT = 1024


@dataclass
class _Counter:
    next: int = 0

    def take(self) -> int:
        self.next += 1
        return self.next


def parse_filter(raw: Mapping[str, Any] | None) -> Filter | None:
    """The filter as a tree of AND/OR/NOT nodes over single-property leaves, the parts made
    only of text conditions gathered into TextSearches.

    Its size and depth are bounded first (standard.check_filter, as for every type), then
    its text conditions, for Email/query and SearchSnippet/get alike.
    """
    if raw is None:
        return None
    check_filter(dict(raw))
    tree = _parse(raw, _Counter())
    _check_text(tree)
    return _searches(tree, _Counter())


def _parse(raw: Mapping[str, Any], counter: _Counter) -> Node | Leaf:
    if "operator" in raw:
        operator = raw["operator"]
        children = raw.get("conditions")
        if (
            operator not in ("AND", "OR", "NOT")
            or not isinstance(children, list)
            or set(raw)
            != {
                "operator",
                "conditions",
            }
        ):
            raise MethodError.invalid_arguments("filter: malformed FilterOperator")
        if not all(isinstance(child, Mapping) for child in children):
            raise MethodError.invalid_arguments("filter: conditions must be objects")
        return Node(operator, tuple(_parse(child, counter) for child in children))
    leaves = tuple(_leaf(name, value) for name, value in raw.items())
    return leaves[0] if len(leaves) == 1 else Node("AND", leaves)


def _leaf(name: str, value: Any) -> Leaf:
    if name in TEXT_CONDITIONS:
        valid = isinstance(value, str) if name != "header" else _valid_header(value)
        if not valid:
            raise MethodError.invalid_arguments(f"filter: {name} has the wrong type")
        return Leaf(name, value)
    if name not in INDEX_CONDITIONS:
        raise MethodError("unsupportedFilter", f"The filter condition {name!r} is not supported")
    if name in ("before", "after"):
        try:
            # Fractions kept: receivedAt is whole seconds, the comparison is exact.
            value = as_utc_date(value).timestamp()
        except InvalidValue as problem:
            raise MethodError.invalid_arguments(f"filter: {name} {problem}") from None
        except OverflowError:
            raise MethodError.invalid_arguments(f"filter: {name} is not a date") from None
    elif name in ("minSize", "maxSize"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise MethodError.invalid_arguments(f"filter: {name} must be an UnsignedInt")
    elif name == "inMailbox":
        if not isinstance(value, str):
            raise MethodError.invalid_arguments("filter: inMailbox must be an Id")
    elif name == "hasAttachment":
        if not isinstance(value, bool):
            raise MethodError.invalid_arguments("filter: hasAttachment must be a Boolean")
    elif name == "inMailboxOtherThan":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise MethodError.invalid_arguments("filter: inMailboxOtherThan must be Id[]")
        value = frozenset(value)
    else:
        value = _flag(value, f"filter: {name}")
    return Leaf(name, value)


def _valid_header(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) in (1, 2)
        and all(isinstance(v, str) for v in value)
        and bool(value[0])
    )


def _flag(keyword: Any, what: str) -> str:
    """A keyword as the index keeps flags: lower case, system keywords as IMAP flags."""
    if not isinstance(keyword, str) or not is_valid_keyword(keyword):
        raise MethodError.invalid_arguments(f"{what} must be a keyword")
    return SYSTEM_FLAGS.get(keyword.lower(), keyword).lower()


def _is_text(tree: Filter) -> bool:
    """Whether a part of the filter holds text conditions only (and at least one)."""
    if isinstance(tree, Leaf):
        return tree.name in TEXT_CONDITIONS
    if isinstance(tree, TextSearch):
        return True
    return bool(tree.children) and all(_is_text(child) for child in tree.children)


def _searches(tree: Node | Leaf, counter: _Counter) -> Filter:
    """``tree`` with its text-only parts as TextSearches, sibling text conditions together.

    Siblings combine under their parent's operator, except under NOT, whose children are
    ORed (RFC 8620 5.5: NOT matches when none of them does): AND(text, text, inMailbox)
    becomes AND(TextSearch(AND(text, text)), inMailbox), one SEARCH instead of two.
    """
    if _is_text(tree):
        return TextSearch(tree, counter.take())
    if isinstance(tree, Leaf):
        return tree
    children = cast(tuple[Node | Leaf, ...], tree.children)
    text = [child for child in children if _is_text(child)]
    rest = [_searches(child, counter) for child in children if not _is_text(child)]
    if not text:
        return Node(tree.operator, tuple(rest))
    operator = "OR" if tree.operator == "NOT" else tree.operator
    joined = text[0] if len(text) == 1 else Node(operator, tuple(text))
    return Node(tree.operator, (TextSearch(joined, counter.take()), *rest))


def _check_text(tree: Node | Leaf) -> None:
    """unsupportedFilter past MAX_SEARCH_TERMS words or MAX_SEARCH_TEXT characters."""
    count = 0
    for leaf in _leaves(tree):
        if leaf.name not in TEXT_CONDITIONS:
            continue
        text = "".join(leaf.value) if leaf.name == "header" else str(leaf.value)
        count += 1 if leaf.name == "header" else max(1, len(terms(text[: MAX_SEARCH_TEXT + 1])))
        if len(text) > MAX_SEARCH_TEXT or count > MAX_SEARCH_TERMS:
            raise MethodError(
                "unsupportedFilter",
                f"The filter's text conditions hold more than {MAX_SEARCH_TERMS} words, or a "
                f"text longer than {MAX_SEARCH_TEXT} characters.",
            )


def _leaves(tree: Filter) -> list[Leaf]:
    if isinstance(tree, Leaf):
        return [tree]
    if isinstance(tree, TextSearch):
        return _leaves(tree.tree)
    return [leaf for child in tree.children for leaf in _leaves(child)]


def text_searches(tree: Filter | None) -> list[TextSearch]:
    """Every TextSearch of the filter."""
    if tree is None or isinstance(tree, Leaf):
        return []
    if isinstance(tree, TextSearch):
        return [tree]
    return [search for child in tree.children for search in text_searches(child)]


def search_key(leaf: Leaf) -> list[list[str]]:
    """The IMAP SEARCH criteria of a text condition, ANDed (values still to be quoted).

    RFC 8621 4.4.1: outside quotes, white space divides tokens that must all be present
    (in any order); a quoted phrase must be present as it is. Each becomes its own key.
    """
    if leaf.name == "header":
        name, *text = leaf.value
        return [["HEADER", name, text[0] if text else ""]]
    key = TEXT_CONDITIONS[leaf.name]
    return [[key, term] for term in terms(str(leaf.value))] or [[key, ""]]


_TERM = re.compile(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'|(\S+)')


def terms(text: str) -> list[str]:
    """Quoted phrases (with backslash escapes) and the words outside them."""
    found = []
    for match in _TERM.finditer(text):
        phrase = match.group(1) if match.group(1) is not None else match.group(2)
        if phrase is not None:
            found.append(re.sub(r"\\(.)", r"\1", phrase))
        else:
            found.append(match.group(3))
    return [t for t in found if t.strip()]


def uses(tree: Filter | None, name: str) -> bool:
    return tree is not None and any(leaf.name == name for leaf in _leaves(tree))


def required_mailbox(tree: Filter | None) -> str | None:
    """A folder every match must be in (an inMailbox at the top or in a top-level AND)."""
    if isinstance(tree, Leaf):
        return tree.value if tree.name == "inMailbox" else None
    if isinstance(tree, Node) and tree.operator == "AND":
        for child in tree.children:
            if isinstance(child, Leaf) and child.name == "inMailbox":
                return str(child.value)
    return None


@dataclass
class Context:
    """What evaluating conditions needs besides the email itself."""

    threads: dict[str, list[EmailRecord]]
    matches: dict[int, set[str]] = field(default_factory=dict)
    attachments: dict[str, bool] = field(default_factory=dict)


def matches(tree: Filter | None, record: EmailRecord, context: Context) -> bool:
    if tree is None:
        return True
    if isinstance(tree, TextSearch):
        return record.id in context.matches.get(tree.key, ())
    if isinstance(tree, Node):
        results = (matches(child, record, context) for child in tree.children)
        if tree.operator == "AND":
            return all(results)
        if tree.operator == "OR":
            return any(results)
        return not any(results)
    return _CHECKS[tree.name](tree, record, context)


def _in_thread(record: EmailRecord, context: Context) -> list[EmailRecord]:
    return context.threads.get(record.thread_id, [record])


_CHECKS: dict[str, Callable[[Leaf, EmailRecord, Context], bool]] = {
    "inMailbox": lambda leaf, r, _: leaf.value in r.mailbox_ids,
    "inMailboxOtherThan": lambda leaf, r, _: any(m not in leaf.value for m in r.mailbox_ids),
    "before": lambda leaf, r, _: r.received_at < leaf.value,
    "after": lambda leaf, r, _: r.received_at >= leaf.value,
    "minSize": lambda leaf, r, _: r.size >= leaf.value,
    "maxSize": lambda leaf, r, _: r.size < leaf.value,
    "hasKeyword": lambda leaf, r, _: leaf.value in r.flags,
    # Unknown (the message could not be read): matches neither true nor false.
    "hasAttachment": lambda leaf, r, c: c.attachments.get(r.id) is leaf.value,
    "notKeyword": lambda leaf, r, _: leaf.value not in r.flags,
    "allInThreadHaveKeyword": lambda leaf, r, c: all(
        leaf.value in e.flags for e in _in_thread(r, c)
    ),
    "someInThreadHaveKeyword": lambda leaf, r, c: any(
        leaf.value in e.flags for e in _in_thread(r, c)
    ),
    "noneInThreadHaveKeyword": lambda leaf, r, c: (
        not any(leaf.value in e.flags for e in _in_thread(r, c))
    ),
}


# -- sorting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    property: str
    ascending: bool
    collation: str
    keyword: str | None


def parse_sort(comparators: Sequence[Comparator] | None) -> list[SortKey]:
    """The sort, receivedAt newest first when none is given (what mail clients show)."""
    if not comparators:
        return [SortKey("receivedAt", False, resolve_collation(None), None)]
    keys = []
    for comparator in comparators:
        if comparator.property not in SORTS:
            raise MethodError(
                "unsupportedSort", f"Sorting by {comparator.property!r} is not supported"
            )
        # RFC 8621 4.4.2: keyword is the one Comparator property Email adds (RFC 8620 5.5
        # lets a type add some), for these sorts. Any other member is ignored, on every
        # sort alike, as Cyrus does: jmapc sends position, anchorOffset and calculateTotal
        # in each comparator, and refusing them would refuse every sorted query it makes.
        keyword = None
        if comparator.property in KEYWORD_SORTS:
            keyword = _flag(comparator.extra.get("keyword"), "sort: keyword")
        collation = resolve_collation(comparator.collation)
        keys.append(SortKey(comparator.property, comparator.is_ascending, collation, keyword))
    return keys


def sort_value(
    key: SortKey, record: EmailRecord, context: Context, summary: Mapping[str, Any] | None
) -> Any:
    """The value an email sorts by for one comparator (ascending order)."""
    name = key.property
    if name == "receivedAt":
        return record.received_at
    if name == "size":
        return record.size
    if name == "hasKeyword":
        return key.keyword in record.flags
    if name == "allInThreadHaveKeyword":
        return all(key.keyword in e.flags for e in _in_thread(record, context))
    if name == "someInThreadHaveKeyword":
        return any(key.keyword in e.flags for e in _in_thread(record, context))
    summary = summary or {}
    if name == "sentAt":
        sent = summary.get("sentAt")
        return (sent is not None, _epoch(sent) if sent else 0)
    if name == "subject":
        return collation_key(base_subject(summary.get("subject") or ""), key.collation)
    addresses = summary.get(name) or []
    first = addresses[0] if addresses else {}
    return collation_key(first.get("name") or first.get("email") or "", key.collation)


def _epoch(value: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


# RFC 5256 2.1 subj-leader and subj-blob, matched where the subject still starts, and the
# "[fwd:" wrapper; with the "(fwd)" trailer, removed by moving the ends of the subject
# rather than copying it once per removal, which took seconds for thousands of "Re: ".
_SUBJECT_LEADER = re.compile(r"\s*(?:re|fwd?|fw)\s*(?:\[[^\]]*\])?\s*:\s*", re.I)
_SUBJECT_BLOB = re.compile(r"\s*\[[^\]]*\]\s*")
_NOT_SPACE = re.compile(r"\S")


def base_subject(subject: str) -> str:
    """RFC 5256 2.1 base subject: without reply/forward prefixes, "(fwd)" trailers, [blobs]
    (unless nothing else is left) and the [fwd: ...] wrapper."""
    value = " ".join(subject.split())
    start, end = 0, len(value)
    while True:
        before = (start, end)
        end = _before_fwd_trailers(value, start, end)
        start = _after_leaders(value, start, end)
        if (
            end - start >= len("[fwd:]")
            and value[start : start + len("[fwd:")].lower() == "[fwd:"
            and value[end - 1] == "]"
        ):
            start, end = _stripped(value, start + len("[fwd:"), end - 1)
        if (start, end) == before:
            return value[start:end]


def _before_fwd_trailers(value: str, start: int, end: int) -> int:
    """Where ``value[start:end]`` ends without its "(fwd)" trailers and white space."""
    while True:
        end = _stripped(value, start, end)[1]
        if value[max(start, end - len("(fwd)")) : end].lower() != "(fwd)":
            return end
        end -= len("(fwd)")


def _after_leaders(value: str, start: int, end: int) -> int:
    """Where ``value[start:end]`` starts without its leaders, and blobs before more text."""
    while True:
        pos = start
        leader = _SUBJECT_LEADER.match(value, pos, end)
        if leader is not None:
            pos = leader.end()
        blob = _SUBJECT_BLOB.match(value, pos, end)
        if blob is not None and _NOT_SPACE.search(value, blob.end(), end) is not None:
            pos = blob.end()
        if pos == start:
            return start
        start = pos


def _stripped(value: str, start: int, end: int) -> tuple[int, int]:
    """``start`` and ``end`` moved past white space, as ``value[start:end].strip()``."""
    while start < end and value[start].isspace():
        start += 1
    while end > start and value[end - 1].isspace():
        end -= 1
    return start, end

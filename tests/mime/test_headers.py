"""Header fields and their JMAP forms (RFC 8621 4.1.2, 4.1.3).

Examples from RFC 8621, RFC 5322 appendix A, RFC 2047 section 8 and RFC 2369, a corpus of
hostile values, and differential checks against the stdlib ``email`` package.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.utils import getaddresses, parsedate_to_datetime

import orjson
import pytest

from gateway.mime.headers import (
    CONVENIENCE_PROPERTIES,
    EmailAddress,
    EmailAddressGroup,
    HeaderForm,
    HeaderSpec,
    RawHeader,
    as_addresses,
    as_date,
    as_grouped_addresses,
    as_message_ids,
    as_raw,
    as_text,
    as_urls,
    convenience_properties,
    form_allowed,
    header_property,
    headers_property,
    parse_header_block,
    parse_header_spec,
)


def mailbox(name: str | None, email: str) -> EmailAddress:
    return {"name": name, "email": email}


def group(name: str | None, *members: EmailAddress) -> EmailAddressGroup:
    return {"name": name, "addresses": list(members)}


@dataclass(frozen=True)
class Case:
    """A raw value (as parse_header_block gives it) and its value in every form."""

    raw: str
    text: str
    grouped: list[EmailAddressGroup]
    message_ids: list[str] | None
    date: str | None
    urls: list[str] | None


CASES = {
    # RFC 8621 4.1.2.3 and 4.1.2.4: the address-list example.
    "rfc8621-address-list": Case(
        raw=' "  James Smythe" <james@example.com>, Friends:\r\n  jane@example.com, '
        "=?UTF-8?Q?John_Sm=C3=AEth?=\r\n  <john@example.com>;",
        text='"  James Smythe" <james@example.com>, Friends:  jane@example.com, '
        "John Sm\u00eeth  <john@example.com>;",
        grouped=[
            group(None, mailbox("James Smythe", "james@example.com")),
            group(
                "Friends",
                mailbox(None, "jane@example.com"),
                mailbox("John Sm\u00eeth", "john@example.com"),
            ),
        ],
        message_ids=None,
        date=None,
        urls=None,
    ),
    # RFC 8621 4.2 Email/get example: header:List-POST:asURLs.
    "rfc8621-list-post": Case(
        raw=" <mailto:partytime@lists.example.com>",
        text="<mailto:partytime@lists.example.com>",
        grouped=[group(None, mailbox(None, "mailto:partytime@lists.example.com"))],
        message_ids=None,
        date=None,
        urls=["mailto:partytime@lists.example.com"],
    ),
    # RFC 5322 A.1.2
    "rfc5322-a12-from": Case(
        raw=' "Joe Q. Public" <john.q.public@example.com>',
        text='"Joe Q. Public" <john.q.public@example.com>',
        grouped=[group(None, mailbox("Joe Q. Public", "john.q.public@example.com"))],
        message_ids=["john.q.public@example.com"],
        date=None,
        urls=None,
    ),
    "rfc5322-a12-to": Case(
        raw=" Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>",
        text="Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>",
        grouped=[
            group(
                None,
                mailbox("Mary Smith", "mary@x.test"),
                mailbox(None, "jdoe@example.org"),
                mailbox("Who?", "one@y.test"),
            )
        ],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "rfc5322-a12-cc": Case(
        raw=' <boss@nil.test>, "Giant; \\"Big\\" Box" <sysservices@example.net>',
        text='<boss@nil.test>, "Giant; \\"Big\\" Box" <sysservices@example.net>',
        grouped=[
            group(
                None,
                mailbox(None, "boss@nil.test"),
                mailbox('Giant; "Big" Box', "sysservices@example.net"),
            )
        ],
        message_ids=["boss@nil.test", "sysservices@example.net"],
        date=None,
        # RFC 2369 2: an item that is not "<url>" ends the list.
        urls=["boss@nil.test"],
    ),
    # RFC 5322 A.1.3
    "rfc5322-a13-group": Case(
        raw=" A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;",
        text="A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;",
        grouped=[
            group(
                "A Group",
                mailbox("Ed Jones", "c@a.test"),
                mailbox(None, "joe@where.test"),
                mailbox("John", "jdoe@one.test"),
            )
        ],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "rfc5322-a13-empty-group": Case(
        raw=" Undisclosed recipients:;",
        text="Undisclosed recipients:;",
        grouped=[group("Undisclosed recipients")],
        message_ids=None,
        date=None,
        urls=None,
    ),
    # RFC 5322 A.5: white space, comments, and other oddities.
    "rfc5322-a5-from": Case(
        raw=" Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
        text="Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
        grouped=[group(None, mailbox("Pete", "pete@silly.test"))],
        message_ids=["pete@silly.test"],
        date=None,
        urls=None,
    ),
    "rfc5322-a5-to": Case(
        raw="A Group(Some people)\r\n     :Chris Jones <c@(Chris's host.)public.example>,\r\n"
        "         joe@example.org,\r\n"
        "  John <jdoe@one.test> (my dear friend); (the end of the group)",
        text="A Group(Some people)     :Chris Jones <c@(Chris's host.)public.example>,"
        "         joe@example.org,  John <jdoe@one.test> (my dear friend); (the end of the group)",
        grouped=[
            group(
                "A Group",
                mailbox("Chris Jones", "c@public.example"),
                mailbox(None, "joe@example.org"),
                mailbox("John", "jdoe@one.test"),
            )
        ],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "rfc5322-a5-cc": Case(
        raw="(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;",
        text="(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;",
        grouped=[group("Hidden recipients")],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "rfc5322-a5-date": Case(
        raw=" Thu,\r\n      13\r\n        Feb\r\n          1969\r\n      23:32\r\n"
        "               -0330 (Newfoundland Time)",
        text="Thu,      13        Feb          1969      23:32"
        "               -0330 (Newfoundland Time)",
        # Not an address-list: best effort reads "13 Feb 1969 23:" as a group.
        grouped=[
            group(None, mailbox(None, "Thu")),
            group("13 Feb 1969 23", mailbox("Newfoundland Time", "32 -0330")),
        ],
        message_ids=None,
        date="1969-02-13T23:32:00-03:30",
        urls=None,
    ),
    "rfc5322-a5-message-id": Case(
        raw=" <testabcd.1234@silly.test>",
        text="<testabcd.1234@silly.test>",
        grouped=[group(None, mailbox(None, "testabcd.1234@silly.test"))],
        message_ids=["testabcd.1234@silly.test"],
        date=None,
        urls=["testabcd.1234@silly.test"],
    ),
    # RFC 5322 A.6.1: obsolete syntax ("To : Mary Smith" keeps the value after the colon).
    "rfc5322-a61-to": Case(
        raw=" Mary Smith\r\n  <mary@example.net>",
        text="Mary Smith  <mary@example.net>",
        grouped=[group(None, mailbox("Mary Smith", "mary@example.net"))],
        message_ids=["mary@example.net"],
        date=None,
        urls=None,
    ),
    "rfc5322-a61-date": Case(
        raw=" 21 Nov 97 09:55:06 GMT",
        text="21 Nov 97 09:55:06 GMT",
        grouped=[group("21 Nov 97 09"), group("55", mailbox(None, "06 GMT"))],
        message_ids=None,
        date="1997-11-21T09:55:06+00:00",
        urls=None,
    ),
    "rfc5322-a61-message-id": Case(
        raw="              <1234   @   local(blah)  .machine .example>",
        text="<1234   @   local(blah)  .machine .example>",
        grouped=[group(None, mailbox(None, "1234@local.machine.example"))],
        message_ids=["1234@local.machine.example"],
        date=None,
        # RFC 2369 2: only white space is dropped inside the brackets.
        urls=["1234@local(blah).machine.example"],
    ),
    # RFC 5322 A.6.3: obsolete white space and comments.
    "rfc5322-a63-from": Case(
        raw=" John Doe <jdoe@machine(comment).  example>",
        text="John Doe <jdoe@machine(comment).  example>",
        grouped=[group(None, mailbox("John Doe", "jdoe@machine.example"))],
        message_ids=["jdoe@machine.example"],
        date=None,
        urls=None,
    ),
    "rfc5322-a63-date": Case(
        raw=" Fri, 21 Nov 1997 09(comment):   55  :  06 -0600",
        text="Fri, 21 Nov 1997 09(comment):   55  :  06 -0600",
        grouped=[
            group(None, mailbox(None, "Fri")),
            group("21 Nov 1997 09"),
            group("55", mailbox(None, "06 -0600")),
        ],
        message_ids=None,
        date="1997-11-21T09:55:06-06:00",
        urls=None,
    ),
    # RFC 2047 8: encoded-words in phrases and unstructured text.
    "rfc2047-from-keith": Case(
        raw=" =?US-ASCII?Q?Keith_Moore?= <moore@cs.utk.edu>",
        text="Keith Moore <moore@cs.utk.edu>",
        grouped=[group(None, mailbox("Keith Moore", "moore@cs.utk.edu"))],
        message_ids=["moore@cs.utk.edu"],
        date=None,
        urls=None,
    ),
    "rfc2047-cc-andre": Case(
        raw=" =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>",
        text="Andr\u00e9 Pirard <PIRARD@vm1.ulg.ac.be>",
        grouped=[group(None, mailbox("Andr\u00e9 Pirard", "PIRARD@vm1.ulg.ac.be"))],
        message_ids=["PIRARD@vm1.ulg.ac.be"],
        date=None,
        urls=None,
    ),
    "rfc2047-subject": Case(
        raw=" =?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n"
        "    =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=",
        text="If you can read this you understand the example.",
        grouped=[
            group(
                None,
                mailbox(
                    None,
                    "=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?= "
                    "=?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=",
                ),
            )
        ],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "rfc2047-comment-name": Case(
        raw=" a@b.c (=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=), d@e.f (=?ISO-8859-1?Q?a?= b)",
        text="a@b.c (=?ISO-8859-1?Q?a?=    =?ISO-8859-1?Q?b?=), d@e.f (=?ISO-8859-1?Q?a?= b)",
        grouped=[group(None, mailbox("ab", "a@b.c"), mailbox("a b", "d@e.f"))],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "rfc2047-comment-after-name-addr": Case(
        raw=" Nathaniel Borenstein <nsb@thumper.bellcore.com>\r\n"
        "    (=?iso-8859-8?b?7eXs+SDv4SDp7Oj08A==?=)",
        text="Nathaniel Borenstein <nsb@thumper.bellcore.com>"
        "    (=?iso-8859-8?b?7eXs+SDv4SDp7Oj08A==?=)",
        grouped=[group(None, mailbox("Nathaniel Borenstein", "nsb@thumper.bellcore.com"))],
        message_ids=["nsb@thumper.bellcore.com"],
        date=None,
        urls=None,
    ),
    # RFC 2369 2 and 3.
    "rfc2369-list-help": Case(
        raw=" <ftp://ftp.host.com/list.txt> (FTP),\r\n    <mailto:list@host.com?subject=help>",
        text="<ftp://ftp.host.com/list.txt> (FTP),    <mailto:list@host.com?subject=help>",
        grouped=[
            group(
                None,
                mailbox(None, "ftp://ftp.host.com/list.txt"),
                mailbox(None, "mailto:list@host.com?subject=help"),
            )
        ],
        message_ids=None,
        date=None,
        urls=["ftp://ftp.host.com/list.txt", "mailto:list@host.com?subject=help"],
    ),
    "rfc2369-list-post-no": Case(
        raw=" NO (posting not allowed on this list)",
        text="NO (posting not allowed on this list)",
        grouped=[group(None, mailbox("posting not allowed on this list", "NO"))],
        message_ids=None,
        date=None,
        urls=None,
    ),
    # Hostile corpus.
    "empty": Case(raw="", text="", grouped=[], message_ids=None, date=None, urls=None),
    "broken-base64-word": Case(
        raw=" =?utf-8?B?invalid?= =?utf-8?B?a?=",
        # Padding repaired, then undecodable UTF-8 replaced; "a" is no base64 at all.
        text="\ufffd{\u0696'\ufffd",
        grouped=[group(None, mailbox(None, "=?utf-8?B?invalid?= =?utf-8?B?a?="))],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "unknown-charset": Case(
        raw=" =?x-unknown?q?abc?= <u@x.y>",
        text="=?x-unknown?q?abc?= <u@x.y>",
        grouped=[group(None, mailbox("=?x-unknown?q?abc?=", "u@x.y"))],
        message_ids=["u@x.y"],
        date=None,
        urls=None,
    ),
    "not-text-codecs": Case(
        raw=" =?base64?q?abc?= =?idna?q?x?= =?utf-8?q??= =?utf-8?q?a b?=",
        text="=?base64?q?abc?= =?idna?q?x?= =?utf-8?q??= =?utf-8?q?a b?=",
        grouped=[
            group(None, mailbox(None, "=?base64?q?abc?= =?idna?q?x?= =?utf-8?q??= =?utf-8?q?a b?="))
        ],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "encoded-word-placement": Case(
        raw=" =?utf-8?q?a?==?utf-8?q?b?= [x]=?utf-8?q?c?= =?utf-8?q?d?=   =?utf-8?q?e?= f",
        text="=?utf-8?q?a?==?utf-8?q?b?= [x]=?utf-8?q?c?= de f",
        grouped=[
            group(
                None,
                mailbox(
                    None,
                    "=?utf-8?q?a?==?utf-8?q?b?= [x]=?utf-8?q?c?= =?utf-8?q?d?= =?utf-8?q?e?= f",
                ),
            )
        ],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "encoded-controls-and-surrogates": Case(
        raw=" =?utf-8?q?a=00b=0D=0Ac=09?= =?utf-7?q?+2AA-?= x",
        text="abc\ufffd x",
        grouped=[group(None, mailbox(None, "=?utf-8?q?a=00b=0D=0Ac=09?= =?utf-7?q?+2AA-?= x"))],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "charset-superset": Case(
        raw=" =?iso-8859-1?q?=93q=94_caf=E9?= =?ks_c_5601-1987?b?jGM=?= <k@r>",
        text="\u201cq\u201d caf\u00e9\ub620 <k@r>",
        grouped=[group(None, mailbox("\u201cq\u201d caf\u00e9\ub620", "k@r"))],
        message_ids=["k@r"],
        date=None,
        urls=None,
    ),
    "quoted-encoded-word-stays": Case(
        raw=' "=?utf-8?q?Quoted_EW?=" <q@x.y>, foo=?utf-8?q?bar?= <g@x.y>',
        text='"=?utf-8?q?Quoted_EW?=" <q@x.y>, foo=?utf-8?q?bar?= <g@x.y>',
        grouped=[
            group(
                None,
                mailbox("=?utf-8?q?Quoted_EW?=", "q@x.y"),
                mailbox("foo=?utf-8?q?bar?=", "g@x.y"),
            )
        ],
        message_ids=["q@x.y", "g@x.y"],
        date=None,
        urls=None,
    ),
    "trailing-commas": Case(
        raw=" ,,a@b.c,",
        text=",,a@b.c,",
        grouped=[group(None, mailbox(None, "a@b.c"))],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "undisclosed-recipients": Case(
        raw=" undisclosed-recipients:;",
        text="undisclosed-recipients:;",
        grouped=[group("undisclosed-recipients")],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "groups-and-runs": Case(
        raw=" a@b, G: c@d;, e@f; g@h, Open: i@j",
        text="a@b, G: c@d;, e@f; g@h, Open: i@j",
        grouped=[
            group(None, mailbox(None, "a@b")),
            group("G", mailbox(None, "c@d")),
            group(None, mailbox(None, "e@f"), mailbox(None, "g@h")),
            group("Open", mailbox(None, "i@j")),
        ],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "missing-domain-and-draft": Case(
        raw=" undisclosed, John Doe, <>, @@@",
        text="undisclosed, John Doe, <>, @@@",
        grouped=[
            group(
                None,
                mailbox(None, "undisclosed"),
                mailbox(None, "John Doe"),
                mailbox(None, ""),
                mailbox(None, "@@@"),
            )
        ],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "unterminated-pieces": Case(
        raw=' John Doe <john@x.y, "unterminated <a@b.c>',
        text='John Doe <john@x.y, "unterminated <a@b.c>',
        # Inside "<...>" nothing splits, so the unclosed bracket swallows the rest.
        grouped=[group(None, mailbox("John Doe", 'john@x.y, "unterminated <a@b.c>'))],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "comments-as-names": Case(
        raw=' a@b.c (=?utf-8?q?J=C3=B6rg?=), b@c (x) (y), (z) c@d, (only a comment), "" <e@f>',
        # In text, "(=?...?=)," is not white-space-delimited, so it stays encoded.
        text='a@b.c (=?utf-8?q?J=C3=B6rg?=), b@c (x) (y), (z) c@d, (only a comment), "" <e@f>',
        grouped=[
            group(
                None,
                mailbox("J\u00f6rg", "a@b.c"),
                mailbox("x", "b@c"),
                mailbox(None, "c@d"),
                mailbox(None, "e@f"),
            )
        ],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "obs-route-and-quoted-local-part": Case(
        raw=' <@route.a,@route.b:user@x.y>, "a b"@c.d, john . doe @ example . com',
        text='<@route.a,@route.b:user@x.y>, "a b"@c.d, john . doe @ example . com',
        grouped=[
            group(
                None,
                mailbox(None, "user@x.y"),
                mailbox(None, '"a b"@c.d'),
                mailbox(None, "john.doe@example.com"),
            )
        ],
        message_ids=None,
        date=None,
        urls=["@route.a,@route.b:user@x.y"],
    ),
    "raw-utf8-nfd": Case(
        raw=" Jo\u0308rg <jo\u0308rg@exa\u0308mple.de>",
        text="J\u00f6rg <j\u00f6rg@ex\u00e4mple.de>",
        grouped=[group(None, mailbox("J\u00f6rg", "jo\u0308rg@exa\u0308mple.de"))],
        message_ids=["jo\u0308rg@exa\u0308mple.de"],
        date=None,
        urls=None,
    ),
    "message-id-without-brackets": Case(
        raw=" abc@example.com",
        text="abc@example.com",
        grouped=[group(None, mailbox(None, "abc@example.com"))],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "message-id-without-at": Case(
        raw=" <1234>",
        text="<1234>",
        grouped=[group(None, mailbox(None, "1234"))],
        message_ids=None,
        date=None,
        urls=["1234"],
    ),
    "in-reply-to-obsolete-phrases": Case(
        raw=' <a@b>,<c@d> (comment) Your message of "x" <e@[1.2.3.4]>',
        text='<a@b>,<c@d> (comment) Your message of "x" <e@[1.2.3.4]>',
        grouped=[group(None, mailbox(None, "a@b"), mailbox(None, "c@d"))],
        message_ids=["a@b", "c@d", "e@[1.2.3.4]"],
        date=None,
        urls=["a@b", "c@d"],
    ),
    "unterminated-message-id": Case(
        raw=" <a@b> <c@d",
        text="<a@b> <c@d",
        grouped=[group(None, mailbox(None, "a@b"))],
        message_ids=None,
        date=None,
        urls=["a@b"],
    ),
    "urls-with-junk": Case(
        raw=" <ht tp://x/ y>, junk, <http://b>",
        text="<ht tp://x/ y>, junk, <http://b>",
        grouped=[
            group(
                None,
                mailbox(None, "ht tp://x/ y"),
                mailbox(None, "junk"),
                mailbox(None, "http://b"),
            )
        ],
        message_ids=None,
        date=None,
        urls=["http://x/y"],
    ),
    "garbage-date": Case(
        raw=" yesterday, around noon",
        text="yesterday, around noon",
        grouped=[group(None, mailbox(None, "yesterday"), mailbox(None, "around noon"))],
        message_ids=None,
        date=None,
        urls=None,
    ),
    "leading-tab": Case(
        raw="\t <x@y> ",
        # RFC 8621 4.1.2.2 removes leading SP characters only.
        text="\t <x@y> ",
        grouped=[group(None, mailbox(None, "x@y"))],
        message_ids=["x@y"],
        date=None,
        urls=["x@y"],
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_every_form(case: Case) -> None:
    got = {
        "raw": as_raw(case.raw),
        "text": as_text(case.raw),
        "addresses": as_addresses(case.raw),
        "grouped": as_grouped_addresses(case.raw),
        "message_ids": as_message_ids(case.raw),
        "date": as_date(case.raw),
        "urls": as_urls(case.raw),
    }
    assert got == {
        "raw": case.raw,
        "text": case.text,
        "addresses": [address for grp in case.grouped for address in grp["addresses"]],
        "grouped": case.grouped,
        "message_ids": case.message_ids,
        "date": case.date,
        "urls": case.urls,
    }


DATES = [
    ("Tue, 1 Jul 2003 10:52:37 +0200", "2003-07-01T10:52:37+02:00"),
    ("tue, 01 JUL 2003 10:52:37 +0200 (CEST)", "2003-07-01T10:52:37+02:00"),
    ("1 Jul 2003 10:52 +0200", "2003-07-01T10:52:00+02:00"),
    ("Tue, 1 Jul 2003 10:52:37 +0200\r\n", "2003-07-01T10:52:37+02:00"),
    # RFC 5322 3.3: "+0000" is UTC; "-0000" is UTC with the local offset unknown, which
    # RFC 3339 4.3 writes "-00:00".
    ("Tue, 1 Jul 2003 10:52:37 +0000", "2003-07-01T10:52:37+00:00"),
    ("Tue, 1 Jul 2003 10:52:37 -0000", "2003-07-01T10:52:37-00:00"),
    # RFC 5322 4.3: two-digit years (the window is at 50) and three-digit years.
    ("Thu, 13 Feb 69 23:32 -0330", "1969-02-13T23:32:00-03:30"),
    ("Mon, 1 Jan 49 00:00:00 +0000", "2049-01-01T00:00:00+00:00"),
    ("Sun, 1 Jan 50 00:00:00 +0000", "1950-01-01T00:00:00+00:00"),
    ("Sat, 1 Jan 104 00:00:00 +0000", "2004-01-01T00:00:00+00:00"),
    # RFC 5322 4.3: named zones, military zones and unknown names.
    ("Tue, 1 Jul 2003 10:52:37 UT", "2003-07-01T10:52:37+00:00"),
    ("Tue, 1 Jul 2003 10:52:37 EDT", "2003-07-01T10:52:37-04:00"),
    ("Tue, 1 Jan 2003 10:52:37 pst", "2003-01-01T10:52:37-08:00"),
    ("Tue, 1 Jul 2003 10:52:37 UTC", "2003-07-01T10:52:37+00:00"),
    ("Tue, 1 Jul 2003 10:52:37 A", "2003-07-01T10:52:37-00:00"),
    ("Tue, 1 Jul 2003 10:52:37 z", "2003-07-01T10:52:37-00:00"),
    ("Tue, 1 Jul 2003 10:52:37 CEST", "2003-07-01T10:52:37-00:00"),
    ("Tue, 1 Jul 2003 10:52:37 J", None),
    ("Tue, 1 Jul 2003 10:52:37 EDTXYZ", None),
    # RFC 5322 3.3: a leap second.
    ("Sat, 31 Dec 2016 23:59:60 +0000", "2016-12-31T23:59:60+00:00"),
    ("Sat, 29 Feb 2020 12:00:00 +0100", "2020-02-29T12:00:00+01:00"),
    # Garbage.
    ("Sun, 29 Feb 2021 10:00:00 +0000", None),
    ("Tue, 31 Apr 2003 10:52:37 +0200", None),
    ("Foo, 1 Jul 2003 10:52:37 +0200", None),
    ("Tue, 1 Foo 2003 10:52:37 +0200", None),
    ("Tue, 1 Jul 2003 24:00:00 +0200", None),
    ("Tue, 1 Jul 2003 10:60:00 +0200", None),
    ("Tue, 1 Jul 2003 10:52:61 +0200", None),
    ("Tue, 1 Jul 2003 10:52:37 +2400", None),
    ("Tue, 1 Jul 2003 10:52:37 +0260", None),
    ("Tue, 1 Jul 12003 10:52:37 +0200", None),
    ("Tue, 1 Jul " + "9" * 5000 + " 10:52:37 +0200", None),
    ("Tue, 1 Jul 2003 1:52:37 +0200", None),
    ("Tue, 1 Jul 2003 10:52:37", None),
    ("Tue, 1 Jul 2003 10:52:37 +0200 CEST", None),
    ("Tue Jul  1 10:52:37 2003", None),
    ("2003-07-01T10:52:37Z", None),
    ("Tue, \u0661 Jul 2003 10:52:37 +0200", None),
    ("Tue, 1 Jul 2003 10:52:37 \u212a", None),
    ("Tue, 1 Jul 2003 10:52:37 +0200 (unterminated", "2003-07-01T10:52:37+02:00"),
    ("(", None),
    ("", None),
]


@pytest.mark.parametrize(("raw", "expected"), DATES)
def test_date_form(raw: str, expected: str | None) -> None:
    assert as_date(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "Tue, 1 Jul 2003 10:52:37 +0200",
        "Thu, 13 Feb 1969 23:32 -0330",
        "Fri, 21 Nov 1997 09:55:06 -0600",
        "1 Jan 2000 00:00:00 +1400",
        "Mon, 31 Dec 2029 23:59:59 -1200",
    ],
)
def test_date_form_matches_the_stdlib(raw: str) -> None:
    expected = parsedate_to_datetime(raw)
    assert as_date(raw) == expected.isoformat()


URLS = [
    (
        " <mailto:list-request@host.com?subject=unsubscribe>",
        ["mailto:list-request@host.com?subject=unsubscribe"],
    ),
    (
        " <http://www.host.com/list.cgi?cmd=sub&lst=list>,\r\n"
        "   <mailto:list-request@host.com?subject=subscribe>",
        [
            "http://www.host.com/list.cgi?cmd=sub&lst=list",
            "mailto:list-request@host.com?subject=subscribe",
        ],
    ),
    (" (comment first) <http://a> (after) , (before) <http://b>", ["http://a", "http://b"]),
    (" <http://a> trailing, <http://b>", ["http://a"]),
    (" <http://a>, <>", ["http://a"]),
    (" <http://a>, <http://b", ["http://a"]),
    (" <http://a", None),
    (" http://a", None),
    (" ", None),
]


@pytest.mark.parametrize(("raw", "expected"), URLS)
def test_urls_form(raw: str, expected: list[str] | None) -> None:
    assert as_urls(raw) == expected


SIMPLE_ADDRESS_LISTS = [
    "Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>",
    '"Joe Q. Public" <john.q.public@example.com>',
    '<boss@nil.test>, "Giant; \\"Big\\" Box" <sysservices@example.net>',
    "a@b.c (John Doe), c@d.e",
    "Jane Roe <jane@example.com>",
]


@pytest.mark.parametrize("raw", SIMPLE_ADDRESS_LISTS)
def test_addresses_match_getaddresses(raw: str) -> None:
    expected = [mailbox(name or None, email) for name, email in getaddresses([raw])]
    assert as_addresses(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "=?utf-8?q?Caf=C3=A9?= au lait",
        "=?utf-8?q?a?= =?utf-8?q?b?= c",
        "=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?= "
        "=?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=",
        "plain  text\twith tab",
    ],
)
def test_text_matches_the_stdlib_on_well_formed_words(raw: str) -> None:
    assert as_text(raw) == str(policy.default.header_factory("Subject", raw))


HOSTILE_BLOCK = (
    b"From someone Mon Jan  1 00:00:00 2024\r\n"
    b" stray continuation\r\n"
    b"Subject: Caf\xe9 \x80 \x93ok\x94 Gr\xc3\xbc\xc3\x9fe\x00!\r\n"
    b"Garbage line without colon\r\n"
    b"\tits continuation\r\n"
    b"To : Mary Smith\r\n  <mary@example.net>\r\n"
    b"X-Empty:\r\n"
    b"X-Bad Name: dropped\r\n"
    b"x-lower:value:with:colons\r\n"
    b"\r\n"
    b"Body: not a header\r\n"
)


def test_header_block_tolerates_garbage() -> None:
    assert parse_header_block(HOSTILE_BLOCK) == [
        # 8-bit octets that are not UTF-8 read as windows-1252; NUL dropped (RFC 8621 4.1.2.1).
        RawHeader("Subject", " Caf\u00e9 \u20ac \u201cok\u201d Gr\u00fc\u00dfe!"),
        # Folding stays in the Raw form; WSP before the colon is not part of the name.
        RawHeader("To", " Mary Smith\r\n  <mary@example.net>"),
        RawHeader("X-Empty", ""),
        RawHeader("x-lower", "value:with:colons"),
    ]


def test_header_block_latin1_subject_reads_as_text() -> None:
    [subject] = parse_header_block(b"Subject: =?utf-8?q?R=C3=A9?= d\xe9j\xe0 vu\r\n\r\n")
    assert as_text(subject.value) == "R\u00e9 d\u00e9j\u00e0 vu"


def test_header_block_line_endings_and_ends() -> None:
    assert parse_header_block(b"") == []
    assert parse_header_block(b"\r\n") == []
    assert parse_header_block(b"A: b") == [RawHeader("A", " b")]
    assert parse_header_block(b"A: b\nB:\n c\n\nC: d\n") == [
        RawHeader("A", " b"),
        RawHeader("B", "\n c"),
    ]
    # Bytes 0x81, 0x8d, 0x8f, 0x90, 0x9d have no windows-1252 character: kept as C1 controls.
    assert parse_header_block(b"A: \x81\x9d\xff\r\n") == [RawHeader("A", " \x81\x9d\u00ff")]


def test_header_block_matches_the_stdlib_parser() -> None:
    block = (
        b"Received: from a.example by b.example;\r\n\tTue, 1 Jul 2003 10:52:37 +0200\r\n"
        b"From: Jane <jane@example.com>\r\n"
        b"Subject:   spaced\r\n"
        b"References: <a@b>\r\n <c@d>\r\n"
        b"\r\n"
    )
    expected = message_from_bytes(block, policy=policy.compat32).items()
    # compat32 keeps folding and drops the white space right after the colon.
    assert [(h.name, h.value.lstrip(" \t")) for h in parse_header_block(block)] == expected


def test_long_folded_references() -> None:
    ids = [f"{n}.{n * 7919}@host{n % 13}.example" for n in range(400)]
    folded = "\r\n\t".join(" ".join(f"<{i}>" for i in ids[n : n + 3]) for n in range(0, 400, 3))
    [references] = parse_header_block(b"References: " + folded.encode() + b"\r\n\r\n")
    assert references.value == " " + folded
    assert as_message_ids(references.value) == ids
    assert as_text(references.value) == folded.replace("\r\n", "")


MESSAGE = (
    b"Return-Path: <bounce@lists.example.com>\r\n"
    b"Message-ID: <first@example.com>\r\n"
    b"Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
    b"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.com>\r\n"
    b"To: Mary <mary@x.test>, undisclosed-recipients:;\r\n"
    b"Cc: a@b.c (Comment Name)\r\n"
    b"Subject: first\r\n"
    b"subject: =?utf-8?q?second_=E2=9C=93?=\r\n"
    b"Message-ID: garbage\r\n"
    b"In-Reply-To: <parent@example.com>\r\n"
    b"References: <root@example.com>\r\n <parent@example.com>\r\n"
    b"List-Post: <mailto:list@example.com>\r\n"
    b"X-Custom: <x@y>\r\n"
    b"\r\n"
)


def test_convenience_properties() -> None:
    assert convenience_properties(parse_header_block(MESSAGE)) == {
        # RFC 8621 4.1.3: the last instance, so the unparseable second Message-ID.
        "messageId": None,
        "inReplyTo": ["parent@example.com"],
        "references": ["root@example.com", "parent@example.com"],
        "sender": None,
        "from": [mailbox("J\u00f6rg", "joerg@example.com")],
        "to": [mailbox("Mary", "mary@x.test")],
        "cc": [mailbox("Comment Name", "a@b.c")],
        "bcc": None,
        "replyTo": None,
        "subject": "second \u2713",
        "sentAt": "2003-07-01T10:52:37+02:00",
    }


def test_convenience_properties_of_nothing() -> None:
    assert convenience_properties([]) == dict.fromkeys(CONVENIENCE_PROPERTIES)


def test_convenience_properties_are_their_header_properties() -> None:
    headers = parse_header_block(MESSAGE)
    specs = {
        "messageId": "header:Message-ID:asMessageIds",
        "inReplyTo": "header:In-Reply-To:asMessageIds",
        "references": "header:References:asMessageIds",
        "sender": "header:Sender:asAddresses",
        "from": "header:From:asAddresses",
        "to": "header:To:asAddresses",
        "cc": "header:Cc:asAddresses",
        "bcc": "header:Bcc:asAddresses",
        "replyTo": "header:Reply-To:asAddresses",
        "subject": "header:Subject:asText",
        "sentAt": "header:Date:asDate",
    }
    assert CONVENIENCE_PROPERTIES.keys() == specs.keys()
    for prop, spec in specs.items():
        assert CONVENIENCE_PROPERTIES[prop] == parse_header_spec(spec)
        assert convenience_properties(headers)[prop] == header_property(headers, spec)


def test_header_properties() -> None:
    headers = parse_header_block(MESSAGE)
    assert header_property(headers, "header:SUBJECT") == " =?utf-8?q?second_=E2=9C=93?="
    assert header_property(headers, "header:subject:asText:all") == ["first", "second \u2713"]
    assert header_property(headers, "header:Subject:all") == [
        " first",
        " =?utf-8?q?second_=E2=9C=93?=",
    ]
    assert header_property(headers, "header:Message-ID:asMessageIds:all") == [
        ["first@example.com"],
        None,
    ]
    assert header_property(headers, "header:To:asGroupedAddresses") == [
        group(None, mailbox("Mary", "mary@x.test")),
        group("undisclosed-recipients"),
    ]
    assert header_property(headers, "header:List-Post:asURLs") == ["mailto:list@example.com"]
    assert header_property(headers, "header:Return-Path") == " <bounce@lists.example.com>"
    assert header_property(headers, "header:X-Custom:asMessageIds") == ["x@y"]
    assert header_property(headers, "header:X-Custom:asDate:all") == [None]
    assert header_property(headers, "header:X-Missing") is None
    assert header_property(headers, "header:X-Missing:asAddresses") is None
    assert header_property(headers, "header:X-Missing:all") == []
    assert header_property(headers, HeaderSpec("date", HeaderForm.DATE, all=True)) == [
        "2003-07-01T10:52:37+02:00"
    ]


def test_header_property_rejects_invalid_names() -> None:
    with pytest.raises(ValueError, match="header:From:asDate"):
        header_property([], "header:From:asDate")


def test_headers_property() -> None:
    headers = parse_header_block(b"From: a@b\r\nX-Folded: one\r\n two\r\n\r\n")
    assert headers_property(headers) == [
        {"name": "From", "value": " a@b"},
        {"name": "X-Folded", "value": " one\r\n two"},
    ]


SPECS = [
    ("header:From", HeaderSpec("From")),
    ("header:from:asAddresses", HeaderSpec("from", HeaderForm.ADDRESSES)),
    ("header:Resent-To:asAddresses:all", HeaderSpec("Resent-To", HeaderForm.ADDRESSES, all=True)),
    ("header:From:asRaw", HeaderSpec("From")),
    ("header:From:all", HeaderSpec("From", all=True)),
    ("header:List-POST:asURLs", HeaderSpec("List-POST", HeaderForm.URLS)),
    ("header:X-Foo:asDate:all", HeaderSpec("X-Foo", HeaderForm.DATE, all=True)),
    ("header:List-Id:asText", HeaderSpec("List-Id", HeaderForm.TEXT)),
    ("header:List-Id:asAddresses", HeaderSpec("List-Id", HeaderForm.ADDRESSES)),
    (
        "header:Content-Type:asGroupedAddresses",
        HeaderSpec("Content-Type", HeaderForm.GROUPED_ADDRESSES),
    ),
    (
        "header:Resent-Reply-To:asGroupedAddresses",
        HeaderSpec("Resent-Reply-To", HeaderForm.GROUPED_ADDRESSES),
    ),
    ("header:asText", HeaderSpec("asText")),
    ("header:!~", HeaderSpec("!~")),
    # RFC 8621 4.2: a form forbidden for the field is invalidArguments.
    ("header:From:asDate", None),
    ("header:Subject:asAddresses", None),
    ("header:Date:asText", None),
    ("header:Received:asText", None),
    ("header:Return-Path:asAddresses", None),
    ("header:References:asURLs", None),
    ("header:List-Unsubscribe:asMessageIds", None),
    # Syntax.
    ("header:From:all:asAddresses", None),
    ("header:From:asAddresses:all:all", None),
    ("header:From:astext", None),
    ("header:From:as", None),
    ("header:From:ALL", None),
    ("header:From:", None),
    ("header:", None),
    ("header::all", None),
    ("Header:From", None),
    ("from", None),
    ("header:Fr om", None),
    ("header:Fr\u00f6m", None),
    ("header:From\x7f", None),
]


@pytest.mark.parametrize(("prop", "expected"), SPECS)
def test_parse_header_spec(prop: str, expected: HeaderSpec | None) -> None:
    assert parse_header_spec(prop) == expected


# RFC 8621 4.1.2: the fields each form is restricted to, besides fields RFC 5322 and
# RFC 2369 do not define.
RESTRICTED = {
    HeaderForm.TEXT: {"Subject", "Comments", "Keywords", "List-Id"},
    HeaderForm.ADDRESSES: {
        "From",
        "Sender",
        "Reply-To",
        "To",
        "Cc",
        "Bcc",
        "Resent-From",
        "Resent-Sender",
        "Resent-Reply-To",
        "Resent-To",
        "Resent-Cc",
        "Resent-Bcc",
    },
    HeaderForm.MESSAGE_IDS: {"Message-ID", "In-Reply-To", "References", "Resent-Message-ID"},
    HeaderForm.DATE: {"Date", "Resent-Date"},
    HeaderForm.URLS: {
        "List-Help",
        "List-Unsubscribe",
        "List-Subscribe",
        "List-Post",
        "List-Owner",
        "List-Archive",
    },
}
RESTRICTED[HeaderForm.GROUPED_ADDRESSES] = RESTRICTED[HeaderForm.ADDRESSES]
DEFINED = set().union(*RESTRICTED.values(), {"Return-Path", "Received"}) - {"List-Id"}


@pytest.mark.parametrize("form", list(HeaderForm))
def test_form_allowed_follows_the_rfc_lists(form: HeaderForm) -> None:
    for name in DEFINED | {"List-Id", "X-Anything", "Content-Type"}:
        expected = form is HeaderForm.RAW or name in RESTRICTED[form] or name not in DEFINED
        assert form_allowed(name.upper(), form) is expected, name


FORMS = (as_raw, as_text, as_addresses, as_grouped_addresses, as_message_ids, as_date, as_urls)
PIECES = (
    b'<|>|"|(|)|\\|,|:|;|@|[|]|.| |\t|\r\n |\r\n|\n|=?utf-8?q?|=?x-unknown?b?|=?utf-7?b?|?=|=C3|_|a'
    b"|Mon,|12|Jan|97|+0100|GMT|\xc3\xa9|\xe9|\x00|\xff"
).split(b"|")


def test_random_garbage_never_raises_and_stays_json() -> None:
    rng = random.Random(8621)
    for _ in range(2000):
        value = b"".join(rng.choices(PIECES, k=rng.randrange(1, 40)))
        for header in parse_header_block(b"X-Fuzz:" + value + b"\r\n"):
            for form in FORMS:
                orjson.dumps(form(header.value))


def test_pathological_values_finish() -> None:
    for value in ("(" * 20_000, '"' + "\\" * 20_001, "<" * 20_000, "=?a?q?" * 5_000):
        for form in FORMS:
            form(value)

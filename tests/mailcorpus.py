"""A corpus of raw messages, good and hostile, for Email/get and Thread tests.

Every message is written out by hand as bytes, never generated with the ``email`` package:
a generator would repair what these messages are meant to get wrong (8-bit header octets,
a charset that lies, base64 that does not decode). The source uses LF; ``CORPUS`` holds the
messages with CRLF, as an IMAP server stores them (RFC 5322 2.1) and as APPEND sends them.

Each message carries ``X-Corpus-Key: <key>`` as its first header field, so a test can find
it again with ``SEARCH HEADER X-Corpus-Key <key>``, and has its own ``Message-ID`` (except
``bad_message_id``, whose field is not a msg-id at all) and its own ``Date`` with a non-zero
offset (except ``no_date`` and ``bad_date``). ``INTERNALDATES`` gives each message a distinct
IMAP date-time for APPEND, a little after its Date, so ``receivedAt`` can be checked.

The conversation: ``CONVERSATION`` lists five messages in the order they were sent, linked by
Message-ID, In-Reply-To and References, with subjects "Plans", "Re: Plans", "RE: Plans",
"Fwd: Plans" and "Re: [list] Plans". Two more messages were sent while it went on:

- ``plans_unrelated`` has the subject "Plans" but no In-Reply-To or References;
- ``lunch`` answers ``conv_plans_3`` (its References name the first three messages) under
  the subject "Lunch?".

A Cyrus-like conversation algorithm puts a message in an existing thread only when the
message is linked to it by Message-ID, In-Reply-To or References AND the normalized subjects
agree, where normalization strips "Re:", "RE:", "Fwd:", "Fw:" and "[list]" prefixes,
white space and case. So the five ``CONVERSATION`` messages form one thread, while
``plans_unrelated`` (same subject, no link) and ``lunch`` (linked, other subject) each start a
thread of their own. ``THREADS`` says the same as data, each thread in send order.
"""

from __future__ import annotations


def _crlf(text: bytes) -> bytes:
    """LF line ends as written here become CRLF, the line end of stored mail."""
    if b"\r" in text:
        raise ValueError("write corpus messages with LF only; CRLF is added here")
    return text.replace(b"\n", b"\r\n")


# Forty message ids, one per folded line (the second and later folds with a TAB), so the
# field is about 2 KB long while each line stays far below the 998-octet limit of RFC 5322.
_LONG_REFERENCES = b"".join(
    b"%s<ref-%02d.a1b2c3d4@lists.example.net>" % (b"\n\t" if n % 2 else b"\n ", n)
    for n in range(40)
)

_TEXTS: dict[str, bytes] = {
    # --- Simple single-part messages --------------------------------------------------------
    "plain_7bit": b"""\
Return-Path: <alice@example.org>
From: Alice Example <alice@example.org>
Sender: Secretary <secretary@example.org>
To: Bob Example <bob@example.net>
Cc: carol@example.com
Reply-To: "Alice (work)" <alice.work@example.org>
Subject: Plain 7bit message
Date: Thu, 01 Feb 2024 10:00:00 +0100
Message-ID: <plain-7bit.20240201@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

Hello Bob,

This is a plain 7bit ASCII message.

Alice
""",
    "qp_utf8": b"""\
From: =?utf-8?B?Wm/DqyBEdXBvbnQ=?= <zoe@example.fr>
To: bob@example.net
Subject: =?utf-8?q?Caf=C3=A9_=E2=98=95_et_cre=CC=80me?=
Date: Fri, 02 Feb 2024 08:15:30 -0500
Message-ID: <qp-utf8.20240202@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

Voil=C3=A0 une ligne tr=C3=A8s longue qui d=C3=A9passe la limite de soixante=
-seize caract=C3=A8res et doit donc =C3=AAtre coup=C3=A9e.
Prix: 10 =E2=82=AC, espace finale=20
Fin.
""",
    "base64_text": b"""\
From: Jens Muster <jens@example.de>
To: bob@example.net
Subject: Base64 text
Date: Sat, 03 Feb 2024 23:59:59 +0900
Message-ID: <base64-text.20240203@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: base64

R3LDvMOfZSBhdXMgS8O2bG4hDQpEaWVzZSBOYWNocmljaHQgaXN0IEJhc2U2NC1rb2RpZXJ0Lg0K
""",
    # --- Multipart structures ----------------------------------------------------------------
    "alternative": b"""\
From: Alice Example <alice@example.org>
To: Bob Example <bob@example.net>
Subject: Alternative text and HTML
Date: Sun, 04 Feb 2024 12:30:00 +0530
Message-ID: <alternative.20240204@corpus.example>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="=_alt_boundary_1"

This is a multi-part message in MIME format.

--=_alt_boundary_1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 7bit

Plain text version.
--=_alt_boundary_1
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 7bit

<html><body><p>HTML <b>version</b>.</p></body></html>
--=_alt_boundary_1--
""",
    "mixed_attachments": b"""\
From: Alice Example <alice@example.org>
To: Bob Example <bob@example.net>, Carol <carol@example.com>
Subject: Report with attachments
Date: Mon, 05 Feb 2024 09:00:00 -0800
Message-ID: <mixed-attachments.20240205@corpus.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed-1"

--mixed-1
Content-Type: text/plain; charset=us-ascii

Please find the report attached.

--mixed-1
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQKJeLjz9MKMSAwIG9iago8PCAvVHlwZSAvQ2F0YWxvZyAvUGFnZXMgMiAwIFIgPj4K
ZW5kb2JqCjIgMCBvYmoKPDwgL1R5cGUgL1BhZ2VzIC9LaWRzIFtdIC9Db3VudCAwID4+CmVuZG9i
agp0cmFpbGVyCjw8IC9Sb290IDEgMCBSID4+CiUlRU9GCg==
--mixed-1
Content-Type: text/plain; charset=utf-8
Content-Disposition: attachment;
 filename*=utf-8''%C3%9Cbersicht%20M%C3%A4rz.txt
Content-Transfer-Encoding: 7bit

Line one of the overview.
--mixed-1
Content-Type: application/octet-stream;
 name="=?UTF-8?B?UHLDvGZiZXJpY2h0LnBkZg==?="
Content-Disposition: attachment
Content-Transfer-Encoding: base64

AAECAwQFBgc=
--mixed-1
Content-Type: text/plain; charset=utf-8
Content-Disposition: attachment;
 filename*0*=utf-8''%D0%9E%D1%82%D1%87;
 filename*1*=%D1%91%D1%82.txt
Content-Transfer-Encoding: 7bit

Report in Russian (name split by RFC 2231 continuations).
--mixed-1--
""",
    "related_inline": b"""\
From: Newsletter <news@example.com>
To: Bob Example <bob@example.net>
Subject: HTML with an inline image
Date: Tue, 06 Feb 2024 14:45:10 +0200
Message-ID: <related-inline.20240206@corpus.example>
MIME-Version: 1.0
Content-Type: multipart/related; boundary="rel-1"; type="text/html"

--rel-1
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 7bit

<html><body><p>Our logo:</p><img src="cid:logo.1@corpus.example" alt="logo"></body></html>
--rel-1
Content-Type: image/png; name="logo.png"
Content-Transfer-Encoding: base64
Content-ID: <logo.1@corpus.example>
Content-Disposition: inline; filename="logo.png"

iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLv
AAAAAElFTkSuQmCC
--rel-1--
""",
    "nested_rfc822": b"""\
From: Alice Example <alice@example.org>
To: Bob Example <bob@example.net>
Subject: Fwd: Inner message
Date: Wed, 07 Feb 2024 07:07:07 +1000
Message-ID: <nested-rfc822.20240207@corpus.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer-1"

--outer-1
Content-Type: text/plain; charset=us-ascii

Forwarding the original below.
--outer-1
Content-Type: message/rfc822; name="original.eml"
Content-Disposition: attachment; filename="original.eml"

From: Inner Sender <inner@example.com>
To: Alice Example <alice@example.org>
Subject: Inner message
Date: Tue, 06 Feb 2024 08:00:00 -0100
Message-ID: <nested-inner.20240206@corpus.example>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="inner-1"

--inner-1
Content-Type: text/plain; charset=us-ascii

Inner plain text.
--inner-1
Content-Type: text/html; charset=us-ascii

<p>Inner <i>HTML</i>.</p>
--inner-1--

--outer-1--
""",
    # --- Charsets other than UTF-8 -----------------------------------------------------------
    # Text: "Le cafe etait tres chaud, a bientot." with accents, in ISO-8859-1; the subject is
    # two encoded words on two lines ("Cafe creme et crepes").
    "latin1": b"""\
From: =?iso-8859-1?Q?Ren=E9_Dupont?= <rene@example.fr>
To: =?ISO-8859-1?Q?Fran=E7oise?= <francoise@example.fr>
Subject: =?ISO-8859-1?Q?Caf=E9_cr=E8me_et_?=
 =?ISO-8859-1?Q?cr=EApes?=
Date: Thu, 08 Feb 2024 10:20:00 +0100 (CET)
Message-ID: <latin1.20240208@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: 8bit

Le caf\xe9 \xe9tait tr\xe8s chaud, \xe0 bient\xf4t.
""",
    # Curly quotes, en dash and euro sign: octets 0x80-0x9F, which ISO-8859-1 leaves to C1
    # controls. The Date has no day of week and a one-digit day (both allowed by RFC 5322).
    "cp1252": b"""\
From: Office User <office@example.com>
To: bob@example.net
Subject: =?windows-1252?Q?=93Quoted=94_=96_100_=80?=
Date: 9 Feb 2024 11:11:11 -0330
Message-ID: <cp1252.20240209@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=windows-1252
Content-Transfer-Encoding: 8bit

\x93Smart quotes\x94 \x96 and 100 \x80 please.
""",
    # From "Ivan Petrov", subject "Greetings from Moscow", body "Hello, world! This letter is in
    # KOI8-R." in Russian.
    "koi8r": b"""\
From: =?koi8-r?B?6dfBziDwxdTSz9c=?= <ivan@example.ru>
To: bob@example.net
Subject: =?koi8-r?B?8NLJ18XUIMnaIO3P08vX2Q==?=
Date: Sat, 10 Feb 2024 18:00:00 +0300
Message-ID: <koi8r.20240210@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=koi8-r
Content-Transfer-Encoding: 8bit

\xf0\xd2\xc9\xd7\xc5\xd4, \xcd\xc9\xd2! \xfc\xd4\xcf \xd0\xc9\xd3\xd8\xcd\xcf \xd7 KOI8-R.
""",
    # From "Yamada Taro" in ISO-2022-JP, subject "Meeting schedule" in Shift_JIS (its second
    # kanji has the trail octet 0x5C), body "Hello. About next week's meeting." in Shift_JIS.
    "shift_jis": b"""\
From: =?ISO-2022-JP?B?GyRCOzNFREJATzobKEI=?= <yamada@example.jp>
To: bob@example.net
Subject: =?Shift_JIS?B?ie+LY4LMl1yS6A==?=
Date: Sun, 11 Feb 2024 09:30:00 +0900
Message-ID: <shift-jis.20240211@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=Shift_JIS
Content-Transfer-Encoding: 8bit

\x82\xb1\x82\xf1\x82\xc9\x82\xbf\x82\xcd\x81B\x97\x88\x8fT\x82\xcc\x89\xef\x8bc\x82\xc9\x82\xc2\
\x82\xa2\x82\xc4\x81B
""",
    # --- Broken charsets and transfer encodings ----------------------------------------------
    "utf8_latin1_bytes": b"""\
From: Old Client <old@example.com>
To: bob@example.net
Subject: Declared UTF-8, really Latin-1
Date: Mon, 12 Feb 2024 10:00:00 +0100
Message-ID: <utf8-latin1-bytes.20240212@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Caf\xe9 na\xefve r\xe9sum\xe9.
""",
    "unknown_charset": b"""\
From: Odd Client <odd@example.com>
To: bob@example.net
Subject: =?x-unknown-foo?q?Unknown_charset?=
Date: Tue, 13 Feb 2024 06:00:00 -0600
Message-ID: <unknown-charset.20240213@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset="x-unknown-foo"
Content-Transfer-Encoding: 8bit

Price: 10 \xa4 only.
""",
    "no_charset_8bit": b"""\
From: Script <cron@example.com>
To: bob@example.net
Subject: No charset, 8-bit body
Date: Wed, 14 Feb 2024 16:40:00 +0100
Message-ID: <no-charset-8bit.20240214@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain
Content-Transfer-Encoding: 8bit

Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln.
""",
    # A character outside the base64 alphabet, a line of junk and data after padding.
    "broken_base64": b"""\
From: Broken Encoder <enc@example.com>
To: bob@example.net
Subject: Broken base64
Date: Thu, 15 Feb 2024 03:03:03 -0700
Message-ID: <broken-base64.20240215@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

SGVsbG8gd29ybGQh
VGhpcyBpcyBi*cm9rZW4=
!!!
SGVsbG8=extra
""",
    # --- Malformed header fields -------------------------------------------------------------
    # Raw UTF-8 in header fields and in a filename parameter: allowed by RFC 6532, sent by
    # many clients without SMTPUTF8. From "Zoe Dupont", To "Juergen", subject "Greetings from
    # Cologne", attachment "Cafe.txt", all with their accents.
    "header_8bit_utf8": b"""\
From: Zo\xc3\xab Dupont <zoe@example.fr>
To: J\xc3\xbcrgen <juergen@example.de>
Subject: Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln
Date: Fri, 16 Feb 2024 12:00:00 +0100
Message-ID: <header-8bit-utf8.20240216@corpus.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b8"

--b8
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

K\xc3\xb6ln ist sch\xc3\xb6n.
--b8
Content-Type: text/plain; charset=utf-8; name="Caf\xc3\xa9.txt"
Content-Disposition: attachment; filename="Caf\xc3\xa9.txt"
Content-Transfer-Encoding: 8bit

Caf\xc3\xa9 list.
--b8--
""",
    # Raw ISO-8859-1 octets in header fields, which are not UTF-8.
    "header_8bit_latin1": b"""\
From: Ren\xe9 <rene@example.fr>
To: bob@example.net
Subject: Caf\xe9 cr\xe8me
Date: Sat, 17 Feb 2024 12:00:00 +0200
Message-ID: <header-8bit-latin1.20240217@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Latin-1 octets in the header.
""",
    # Subject: an ISO-8859-1 octet inside a UTF-8 encoded word. To: an encoded word glued to
    # a word before it, which RFC 2047 5 forbids decoding. Cc: B encoding that is not base64.
    "bad_encoded_word": b"""\
From: Alice Example <alice@example.org>
To: Bob=?utf-8?q?_Smith?= <bob@example.net>
Cc: =?utf-8?B?not*base64?= <cc@example.org>
Subject: =?utf-8?q?Caf=E9_au_lait?=
Date: Sun, 18 Feb 2024 20:20:20 -0300
Message-ID: <bad-encoded-word.20240218@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Bad encoded words in the header.
""",
    "no_date": b"""\
From: Alice Example <alice@example.org>
To: bob@example.net
Subject: No Date header
Message-ID: <no-date.20240219@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

This message has no Date header field.
""",
    "bad_date": b"""\
From: Alice Example <alice@example.org>
To: bob@example.net
Subject: Unparseable Date header
Date: sometime last tuesday
Message-ID: <bad-date.20240220@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

The Date header field cannot be parsed.
""",
    # To: an empty group. From: an unclosed quoted string and no addr-spec. Cc: empty list
    # elements and a trailing comma. Reply-To: a group of two.
    "bad_addresses": b"""\
From: "Broken <no-at-sign>
To: undisclosed-recipients:;
Cc: a@example.org, , b@example.org,
Reply-To: Team: one@example.org, Two <two@example.org>;
Subject: Invalid address lists
Date: Wed, 21 Feb 2024 08:00:00 +0100
Message-ID: <bad-addresses.20240221@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Address fields that do not parse cleanly.
""",
    "long_references": b"""\
From: List Member <member@lists.example.net>
To: list@lists.example.net
Subject: Re: A very long thread
Date: Thu, 22 Feb 2024 17:30:00 +0545
Message-ID: <long-references.20240222@corpus.example>
In-Reply-To: <ref-39.a1b2c3d4@lists.example.net>
References:"""
    + _LONG_REFERENCES
    + b"""
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

A reply deep in a long thread.
""",
    "duplicate_subject": b"""\
From: Alice Example <alice@example.org>
To: bob@example.net
Subject: First subject
Subject: Second subject
Date: Fri, 23 Feb 2024 10:10:10 +0100
Message-ID: <duplicate-subject.20240223@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Two Subject header fields.
""",
    "header_no_space": b"""\
From:dave@example.org
To:Eve <eve@example.net>
Subject:No space after colon
Date:Sat, 24 Feb 2024 13:13:13 -0400
Message-ID:<header-no-space.20240224@corpus.example>
MIME-Version:1.0
Content-Type:text/plain; charset=us-ascii

Header fields without a space after the colon.
""",
    "bad_message_id": b"""\
From: Alice Example <alice@example.org>
To: bob@example.net
Subject: Message-ID without angle brackets
Date: Sun, 25 Feb 2024 09:09:09 +0100
Message-ID: bad-message-id.20240225@corpus.example
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

The Message-ID field is not a msg-id.
""",
    # --- A conversation, in send order, with two messages that must not join it -------------
    "conv_plans_1": b"""\
From: Alice Example <alice@example.org>
To: Bob Example <bob@example.net>
Subject: Plans
Date: Fri, 01 Mar 2024 09:00:00 +0100
Message-ID: <plans-1@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

What are the plans for the weekend?
""",
    "conv_plans_2": b"""\
From: Bob Example <bob@example.net>
To: Alice Example <alice@example.org>
Subject: Re: Plans
Date: Fri, 01 Mar 2024 10:30:00 -0500
Message-ID: <plans-2@corpus.example>
In-Reply-To: <plans-1@corpus.example>
References: <plans-1@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Hiking on Saturday?
""",
    "plans_unrelated": b"""\
From: Carol <carol@example.com>
To: Alice Example <alice@example.org>
Subject: Plans
Date: Fri, 01 Mar 2024 17:00:00 +0100
Message-ID: <plans-unrelated@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Unrelated plans for the office move.
""",
    "conv_plans_3": b"""\
From: Alice Example <alice@example.org>
To: Bob Example <bob@example.net>
Subject: RE: Plans
Date: Sat, 02 Mar 2024 02:00:00 +0900
Message-ID: <plans-3@corpus.example>
In-Reply-To: <plans-2@corpus.example>
References: <plans-1@corpus.example> <plans-2@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Hiking it is.
""",
    "conv_plans_4": b"""\
From: Bob Example <bob@example.net>
To: Dave <dave@example.org>
Subject: Fwd: Plans
Date: Sat, 02 Mar 2024 09:15:00 +0100
Message-ID: <plans-4@corpus.example>
References: <plans-1@corpus.example> <plans-2@corpus.example>
 <plans-3@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Dave, want to join us?
""",
    "lunch": b"""\
From: Bob Example <bob@example.net>
To: Alice Example <alice@example.org>
Subject: Lunch?
Date: Sat, 02 Mar 2024 11:45:00 +0200
Message-ID: <lunch@corpus.example>
In-Reply-To: <plans-3@corpus.example>
References: <plans-1@corpus.example> <plans-2@corpus.example>
 <plans-3@corpus.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Unrelated to the hike: lunch today?
""",
    "conv_plans_5": b"""\
From: Dave <dave@example.org>
To: list@example.org
Subject: Re: [list] Plans
Date: Sun, 03 Mar 2024 08:00:00 -0800
Message-ID: <plans-5@corpus.example>
In-Reply-To: <plans-4@corpus.example>
References: <plans-1@corpus.example> <plans-2@corpus.example>
 <plans-3@corpus.example> <plans-4@corpus.example>
List-Id: <list.example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Count me in.
""",
}

CORPUS: dict[str, bytes] = {
    key: _crlf(b"X-Corpus-Key: %s\n%s" % (key.encode(), text)) for key, text in _TEXTS.items()
}

CONVERSATION: list[str] = [
    "conv_plans_1",
    "conv_plans_2",
    "conv_plans_3",
    "conv_plans_4",
    "conv_plans_5",
]

THREADS: list[list[str]] = [CONVERSATION, ["plans_unrelated"], ["lunch"]]

# RFC 3501 date-time for APPEND, each a little after the message's Date (the Date instants
# are in the comments where the zones differ), distinct, and in send order for the
# conversation.
INTERNALDATES: dict[str, str] = {
    "plain_7bit": "01-Feb-2024 10:00:05 +0100",
    "qp_utf8": "02-Feb-2024 14:16:00 +0100",  # sent 13:15:30Z
    "base64_text": "03-Feb-2024 16:00:10 +0100",  # sent 14:59:59Z
    "alternative": "04-Feb-2024 08:01:00 +0100",  # sent 07:00:00Z
    "mixed_attachments": "05-Feb-2024 18:02:00 +0100",  # sent 17:00:00Z
    "related_inline": "06-Feb-2024 13:46:00 +0100",  # sent 12:45:10Z
    "nested_rfc822": "06-Feb-2024 22:08:00 +0100",  # sent 6 Feb 21:07:07Z
    "latin1": "08-Feb-2024 10:21:00 +0100",
    "cp1252": "09-Feb-2024 15:42:00 +0100",  # sent 14:41:11Z
    "koi8r": "10-Feb-2024 16:01:00 +0100",  # sent 15:00:00Z
    "shift_jis": "11-Feb-2024 01:31:00 +0100",  # sent 00:30:00Z
    "utf8_latin1_bytes": "12-Feb-2024 10:00:30 +0100",
    "unknown_charset": "13-Feb-2024 13:00:40 +0100",  # sent 12:00:00Z
    "no_charset_8bit": "14-Feb-2024 16:41:00 +0100",
    "broken_base64": "15-Feb-2024 11:04:00 +0100",  # sent 10:03:03Z
    "header_8bit_utf8": "16-Feb-2024 12:00:50 +0100",
    "header_8bit_latin1": "17-Feb-2024 11:01:00 +0100",  # sent 10:00:00Z
    "bad_encoded_word": "19-Feb-2024 00:21:00 +0100",  # sent 18 Feb 23:20:20Z
    "no_date": "19-Feb-2024 09:00:00 +0100",
    "bad_date": "20-Feb-2024 09:00:00 -0500",
    "bad_addresses": "21-Feb-2024 08:00:15 +0100",
    "long_references": "22-Feb-2024 12:46:00 +0100",  # sent 11:45:00Z
    "duplicate_subject": "23-Feb-2024 10:10:20 +0100",
    "header_no_space": "24-Feb-2024 18:14:00 +0100",  # sent 17:13:13Z
    "bad_message_id": "25-Feb-2024 09:09:30 +0100",
    "conv_plans_1": "01-Mar-2024 09:00:10 +0100",
    "conv_plans_2": "01-Mar-2024 16:30:20 +0100",  # sent 15:30:00Z
    "plans_unrelated": "01-Mar-2024 17:00:30 +0100",
    "conv_plans_3": "01-Mar-2024 18:00:40 +0100",  # sent 17:00:00Z
    "conv_plans_4": "02-Mar-2024 09:15:10 +0100",
    "lunch": "02-Mar-2024 10:45:20 +0100",  # sent 09:45:00Z
    "conv_plans_5": "03-Mar-2024 17:00:30 +0100",  # sent 16:00:00Z
}

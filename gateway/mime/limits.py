"""Bounds on the work one message can cause, in one place.

Anyone can deliver a message to a user, and the gateway parses it on behalf of every reader:
nothing here may grow faster than the message, and where even linear work would be large
without gain, the message is read only up to a bound that real mail never reaches. Past a
bound the message is still served, whole, by its blob (the upstream's octets are never
touched); only what the gateway derives from it is cut, in the way each bound describes.

Values follow what mail software already enforces, so that no message a real mail system
delivers comes near them.
"""

from __future__ import annotations

from typing import Final

# Octets of a header section read for its fields (the message's own and each MIME part's);
# fields past them are left out of ``headers`` and of every header property. Exchange refuses
# messages whose header passes 256 KiB (a receive connector's MaxHeaderSize), Exim 1 MiB.
HEADER_SECTION_OCTETS: Final = 256 * 1024

# Octets of one header field's value kept; the rest of the field is dropped. Postfix
# discards what passes 100 KiB of one header field the same way (its header_size_limit).
FIELD_OCTETS: Final = 100 * 1024

# Tokens (words, quoted strings, comments, specials) read of one structured field for its
# Addresses, GroupedAddresses, MessageIds or Date form; the rest of the field is discarded,
# as Postfix discards address tokens past 10,240 (its header_address_token_limit).
STRUCTURED_TOKENS: Final = 10240

# MIME entities of one message that are parsed (the message itself, multiparts, leaves and
# attached messages alike); the parts after them are not listed in bodyStructure (nor in
# textBody, htmlBody and attachments), while every listed part keeps the section number and
# octets the upstream gives it. Stalwart indexes at most 1,000 parts of a message (its
# MAX_MESSAGE_PARTS); Dovecot numbers at most 10,000.
MAX_PARTS: Final = 1000

# Multiparts and attached messages nested deeper than this are listed without their parts.
# Postfix refuses mail nested deeper than 100 (mime_nesting_limit), Dovecot stops there too;
# a lower bound here keeps every listed part numbered as the upstream numbers it.
MAX_DEPTH: Final = 64

# Parameters of a Content-Type or Content-Disposition field that are read (each RFC 2231
# continuation counts as one), as Dovecot does (RFC2231_MAX_PARAMS, "to avoid excessive CPU
# usage"); the rest are dropped.
PARAMETERS_PER_FIELD: Final = 128

# Octets of a Content-Type or Content-Disposition field handed to the parameter parser; a
# long RFC 2231 filename takes about 1 KiB. The stdlib's parser spends tens of microseconds
# per parameter, so the fields of a whole message share a budget as well: once it is spent,
# later parts keep only their media type and disposition, without parameters.
MIME_FIELD_OCTETS: Final = 8 * 1024
MIME_FIELDS_BUDGET: Final = 256 * 1024

# Message ids a message contributes to threading besides its own: In-Reply-To first, then
# References from the nearest ancestor back. Cyrus reads at most 20 ids of each field.
THREAD_PARENTS: Final = 20

# Longer message ids are ignored for threading: a msg-id has no folding white space (RFC 5322
# 3.6.4), so a real one fits on a line of at most 998 characters (RFC 5322 2.1.1).
MESSAGE_ID_CHARS: Final = 998

# Characters of a normalised subject compared and stored for threading. Stalwart keeps 255
# of its thread names (MAX_SORT_FIELD_LENGTH).
THREAD_SUBJECT_CHARS: Final = 255

# Octets (or characters) one call into C code handles at most when text is decoded or scanned
# in one pass: a worker thread in such a call keeps the interpreter, and with it the event
# loop, for the whole call, so a pass over megabytes is made in pieces of this size.
PIECE: Final = 256 * 1024

# Decoded octets of a text part looked at for its charset when its label is missing or wrong;
# the whole part is then decoded with the charset found.
CHARSET_SAMPLE_OCTETS: Final = 64 * 1024

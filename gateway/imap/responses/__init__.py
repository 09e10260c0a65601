"""Pure parsers of IMAP server responses, one module per response family.

:mod:`.tokens` turns one complete response (as :class:`gateway.imap.framing.ResponseFramer`
cut it) into a :class:`~.tokens.Tagged`, :class:`~.tokens.Untagged` or
:class:`~.tokens.Continuation` of generic values; :mod:`.values` holds the checks the typed
parsers share. The typed parsers sit beside them, each in the module named after what it
reads: :mod:`.capabilities`, :mod:`.codes` (APPENDUID, COPYUID, MODIFIED), :mod:`.list`,
:mod:`.namespace`, :mod:`.status`, :mod:`.fetch`, :mod:`.bodystructure`, :mod:`.search`,
:mod:`.vanished`, :mod:`.select`. A new family (IDLE's unsolicited EXISTS and EXPUNGE,
NOTIFY's STATUS and LIST events, QUOTA and QUOTAROOT, METADATA) is a new module here built
on :mod:`.tokens` and :mod:`.values`; none of them does I/O.
"""

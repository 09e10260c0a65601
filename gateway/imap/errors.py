"""The closed set of errors the upstream IMAP layer raises.

Callers above ``gateway.imap`` catch these (and only these) to map upstream trouble to
``serverUnavailable`` / ``serverFail``. Messages never carry credentials: commands are
logged through :meth:`gateway.imap.commands.Command.for_log`, and server data is described
by position, not quoted, so mail content does not end up in logs either.
"""

from __future__ import annotations


class ImapError(Exception):
    """Base class, so callers can catch every upstream failure in one clause."""


class ProtocolError(ImapError):
    """The server sent bytes that are malformed or not allowed at this point.

    The connection that produced them can no longer be trusted and should be dropped.
    """


class UpstreamUnavailable(ImapError):
    """The upstream cannot be reached or refuses service for now; worth retrying later."""


class ConnectionLost(ImapError):
    """The upstream connection closed or failed while a command was outstanding."""


class CommandTimeout(ImapError):
    """The server did not complete a command in time; the connection should be dropped."""


class CommandFailed(ImapError):
    """A command ended in a tagged NO or BAD (RFC 3501 7.1).

    ``code`` is the response code's name, upper-cased (e.g. ``NONEXISTENT`` or
    ``ALREADYEXISTS`` of RFC 5530): it is the reliable reason, while ``text`` is for humans
    and differs between servers.
    """

    def __init__(self, status: str, code: str | None, text: str) -> None:
        self.status = status
        self.code = code
        self.text = text
        super().__init__(f"{status}{'' if code is None else f' [{code}]'} {text}".rstrip())


class AuthenticationFailed(CommandFailed):
    """LOGIN or AUTHENTICATE was refused; the credentials are not repeated in the message."""

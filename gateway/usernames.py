"""How the upstream normalises user names, as the operator describes it (GATEWAY_USERNAME_FORMAT).

The gateway learns who a user is from the upstream after login (:mod:`gateway.imap.identity`).
Before login, and on upstreams that keep no INBOX id, it has only the name the client typed;
this format says which names the upstream treats as one user, in Dovecot's words: ``%u`` the
whole name, ``%n`` the part before the first ``@``, ``%d`` the part after it, each optionally
lower-cased (``%Lu``, ``%Ln``, ``%Ld``), ``%%`` a percent sign, any other text as it is. A
Dovecot with ``auth_username_format = %Lu`` and a passdb with ``username_format = %n`` is
``%Ln``; ``%Ln@example.com`` names users of a single domain with or without it.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"%(?:(L?)([und])|(%))|%")


class UsernameFormat:
    """A validated format; :meth:`apply` maps a typed name to the upstream's spelling."""

    def __init__(self, template: str) -> None:
        pieces: list[tuple[str, bool] | str] = []
        position = 0
        for match in _TOKEN.finditer(template):
            pieces.append(template[position : match.start()])
            if match.group(3):
                pieces.append("%")
            elif match.group(2):
                pieces.append((match.group(2), bool(match.group(1))))
            else:
                raise ValueError("% must be followed by u, n, d (each optionally after L) or %")
            position = match.end()
        pieces.append(template[position:])
        if not any(isinstance(p, tuple) and p[0] in "un" for p in pieces):
            # Without the user's own name every user would be one: never.
            raise ValueError("must contain %u or %n (optionally %Lu or %Ln)")
        self.template = template
        self._pieces = pieces

    def apply(self, username: str) -> str:
        local, at, domain = username.partition("@")
        parts = {"u": username, "n": local, "d": domain if at else ""}
        out = []
        for piece in self._pieces:
            if isinstance(piece, str):
                out.append(piece)
            else:
                value = parts[piece[0]]
                out.append(value.lower() if piece[1] else value)
        return "".join(out)

    def throttle_key(self, username: str) -> str:
        """The name failed logins are counted under: spellings that differ in case or in
        surrounding space count as one, even where the upstream tells them apart, so no
        spelling buys an attacker more guesses."""
        return self.apply(username.strip()).casefold()

"""A plain IMAP client (stdlib imaplib) as the independent witness of what Dovecot or Cyrus
holds."""

from __future__ import annotations

import base64
import imaplib
import itertools
import re
from email.message import EmailMessage
from typing import Protocol


class ImapServer(Protocol):
    """A test server (tests.servers.Dovecot, tests.cyrus.Cyrus) that logs in a stdlib client."""

    def client(self, user: str) -> imaplib.IMAP4: ...


def message(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.org"
    msg["Subject"] = subject
    msg.set_content("body\n")
    return msg.as_bytes()


class Witness:
    def __init__(self, server: ImapServer, user: str) -> None:
        self.imap: imaplib.IMAP4 = server.client(user)

    def __enter__(self) -> Witness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.imap.logout()

    def ok(self, result: tuple[str, list[object]]) -> list[object]:
        assert result[0] == "OK", result
        return result[1]

    def create(self, raw_name: str) -> None:
        self.ok(self.imap.create(f'"{raw_name}"'))

    def rename(self, old: str, new: str) -> None:
        self.ok(self.imap.rename(f'"{old}"', f'"{new}"'))

    def delete(self, raw_name: str) -> None:
        self.ok(self.imap.delete(f'"{raw_name}"'))

    def append(self, raw_name: str, subject: str, flags: str = "") -> None:
        self.ok(self.imap.append(f'"{raw_name}"', f"({flags})", None, message(subject)))

    def status(self, raw_name: str) -> dict[str, int]:
        data = self.ok(self.imap.status(f'"{raw_name}"', "(MESSAGES UNSEEN)"))
        text = data[0].decode()  # type: ignore[union-attr]
        return {k: int(v) for k, v in re.findall(r"(MESSAGES|UNSEEN) (\d+)", text)}

    def names(self) -> set[str]:
        """Raw (modified UTF-7) names of every folder."""
        lines = self.ok(self.imap.list('""', "*"))
        return {_last_astring(line.decode()) for line in lines}  # type: ignore[union-attr]

    def subscribed(self) -> set[str]:
        lines = self.ok(self.imap.lsub('""', "*"))
        return {_last_astring(line.decode()) for line in lines if line}  # type: ignore[union-attr]

    def store(self, raw_name: str, flags: str) -> None:
        self.ok(self.imap.select(f'"{raw_name}"'))
        self.ok(self.imap.store("1:*", "+FLAGS", f"({flags})"))
        self.imap.close()


def mutf7(name: str) -> str:
    """Modified UTF-7 (RFC 3501 5.1.3) written here from the RFC with the stdlib's base64,
    independent of the gateway's encoder."""
    out = []
    for printable, chars in itertools.groupby(name, key=lambda c: 0x20 <= ord(c) <= 0x7E):
        text = "".join(chars)
        if printable:
            out.append(text.replace("&", "&-"))
        else:
            encoded = base64.b64encode(text.encode("utf-16-be")).decode().rstrip("=")
            out.append("&" + encoded.replace("/", ",") + "-")
    return "".join(out)


def _last_astring(line: str) -> str:
    name = line.rsplit(' "/" ', 1)[1]
    return name[1:-1] if name.startswith('"') else name

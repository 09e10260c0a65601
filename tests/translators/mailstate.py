"""What a user's folders hold on the IMAP server, read with the stdlib IMAP client: the
ground truth of the Email/set tests, independent of the gateway."""

from __future__ import annotations

import email
import imaplib
import re
from email import policy
from email.message import EmailMessage
from typing import Any

from tests.translators.witness import ImapServer

KEY = "X-Test-Key"
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_UID = re.compile(rb"UID (\d+)")


def ok(result: tuple[str, Any]) -> Any:
    assert result[0] == "OK", result
    return result[1]


def message(key: str, subject: str | None = None, body: str = "hello\n") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Ann <ann@example.org>"
    msg["To"] = "bob@example.org"
    msg["Subject"] = subject or f"message {key}"
    msg["Message-ID"] = f"<{key}@example.org>"
    msg[KEY] = key
    msg.set_content(body)
    return msg.as_bytes(policy=policy.SMTP)


class Mail:
    """A logged-in plain IMAP client of one user."""

    def __init__(self, server: ImapServer, user: str) -> None:
        self.imap: imaplib.IMAP4 = server.client(user)

    def close(self) -> None:
        self.imap.logout()

    def create(self, *folders: str) -> None:
        for folder in folders:
            ok(self.imap.create(f'"{folder}"'))

    def append(self, folder: str, key: str, flags: str = "", date: str | None = None) -> None:
        ok(self.imap.append(f'"{folder}"', f"({flags})", date, message(key)))

    def copy(self, source: str, key: str, destination: str) -> None:
        ok(self.imap.select(f'"{source}"'))
        uid = self.uids(source, key)[0]
        ok(self.imap.uid("COPY", uid, f'"{destination}"'))

    def uids(self, folder: str, key: str) -> list[str]:
        ok(self.imap.select(f'"{folder}"', readonly=True))
        found = ok(self.imap.uid("SEARCH", "HEADER", KEY, key))[0].split()
        return [u.decode() for u in found]

    def folder(self, folder: str) -> dict[str, list[set[str]]]:
        """Key -> the flag sets of its copies in ``folder`` (several copies: several sets)."""
        ok(self.imap.select(f'"{folder}"', readonly=True))
        data = ok(self.imap.uid("FETCH", "1:*", f"(UID FLAGS BODY.PEEK[HEADER.FIELDS ({KEY})])"))
        found: dict[str, list[set[str]]] = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            prefix, header = item
            flags = _FLAGS.search(prefix)
            assert flags is not None, prefix
            parsed = email.message_from_bytes(header, policy=policy.default)
            names = {f.decode() for f in flags[1].split()} - {"\\Recent"}
            found.setdefault(str(parsed[KEY]), []).append(names)
        return found

    def raw(self, folder: str, key: str) -> bytes:
        uid = self.uids(folder, key)[0]
        data = ok(self.imap.uid("FETCH", uid, "(BODY.PEEK[])"))
        return bytes(data[0][1])

    def fetch(self, folder: str, uid: str, items: str) -> bytes:
        ok(self.imap.select(f'"{folder}"', readonly=True))
        data = ok(self.imap.uid("FETCH", uid, items))
        return bytes(data[0][0] if isinstance(data[0], tuple) else data[0])

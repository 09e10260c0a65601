"""What the EmailSubmission tests share: requests that opt in to submission, drafts made with
Email/set, and a small recording SMTP server (aiosmtpd) whose answers a test chooses."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.jmapclient import CORE, MAIL, Jmap
from tests.servers import LOOPBACK, free_port

SUBMISSION = "urn:ietf:params:jmap:submission"
DOMAIN = "example.com"


async def request(jmap: Jmap, *calls: tuple[str, dict[str, Any]]) -> list[list[Any]]:
    """``calls`` in one request that opts in to mail and submission (accountId filled in)."""
    method_calls = [
        [name, {"accountId": jmap.account_id, **args}, f"c{i}"]
        for i, (name, args) in enumerate(calls)
    ]
    body = {"using": [CORE, MAIL, SUBMISSION], "methodCalls": method_calls}
    response = await jmap.http.post(
        "/jmap/api/",
        content=json.dumps(body),
        auth=jmap.auth,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    return response.json()["methodResponses"]  # type: ignore[no-any-return]


def address(jmap: Jmap) -> str:
    """The user's own address (GATEWAY_MAIL_DOMAIN), their default Identity's."""
    return f"{jmap.username}@{DOMAIN}"


async def identity_id(jmap: Jmap) -> str:
    (response,) = await request(jmap, ("Identity/get", {"ids": None}))
    assert response[0] == "Identity/get", response
    (identity,) = response[1]["list"]
    return str(identity["id"])


def draft(jmap: Jmap, mailboxes: dict[str, dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """An Email/set create of a draft from the user, To/Cc/Bcc as given (lists of addresses)."""
    email: dict[str, Any] = {
        "mailboxIds": {mailboxes["Drafts"]["id"]: True},
        "keywords": {"$draft": True, "$seen": True},
        "from": [{"name": "Sender", "email": address(jmap)}],
        "subject": "a message to send",
        "bodyStructure": {"type": "text/plain", "partId": "1"},
        "bodyValues": {"1": {"value": "Hello,\r\nthis is the text.\r\n"}},
    }
    for name in ("to", "cc", "bcc"):
        if name in fields:
            email[name] = [{"email": a} for a in fields.pop(name)]
    email.update(fields)
    return email


@dataclass
class Received:
    mail_from: str
    mail_options: list[str]
    rcpt_tos: list[str]
    content: bytes


@dataclass
class Sink:
    """An SMTP server recording every message it takes; ``refuse`` recipients get 550 at
    RCPT, the next ``tempfail`` DATA get 451 after the final ".", and with ``cut`` the
    connection is closed once a message is taken, before its reply (RFC 1047's case).
    ``size`` is the SIZE it advertises and enforces."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    tempfail: int = 0
    cut: bool = False
    size: int = 33554432
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            if self.tempfail:
                self.tempfail -= 1
                return "451 4.3.0 Error: queue file write error"
            content = envelope.original_content or b""
            self.received.append(
                Received(
                    str(envelope.mail_from),
                    list(envelope.mail_options),
                    list(envelope.rcpt_tos),
                    content,
                )
            )
        if self.cut:
            server.transport.close()
        return "250 2.0.0 Ok: queued"

    @property
    def url(self) -> str:
        return f"smtp://{LOOPBACK}:{self.port}"

    def controller(self) -> Controller:
        return Controller(
            self, hostname=LOOPBACK, port=self.port, decode_data=False, data_size_limit=self.size
        )

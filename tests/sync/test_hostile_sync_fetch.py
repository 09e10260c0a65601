"""What a sync asks the upstream for each new message: no more header octets than it reads.

A message of 7 MB of header fields, a third of them Subject, made every sync page that held
it carry megabytes of Subject fields that threading then cut to 256 KiB. The commands are
seen by tests.faultproxy between the gateway and Dovecot.
"""

from __future__ import annotations

from gateway.mime.limits import HEADER_SECTION_OCTETS
from tests import hostile_mail
from tests.faultproxy import FaultProxy
from tests.jmapclient import Jmap
from tests.servers import Dovecot
from tests.translators.mailseed import append
from tests.translators.proxied import jmap, proxy

__all__ = ["jmap", "proxy"]  # fixtures


async def test_the_fields_a_sync_fetches_are_cut_where_threading_stops_reading(
    dovecot: Dovecot, jmap: Jmap, proxy: FaultProxy
) -> None:
    append(dovecot, jmap.username, {"many_header_fields": hostile_mail.many_header_fields()})
    proxy.clear()
    (email,) = (await jmap.call("Email/get", ids=None, properties=["messageId"]))["list"]
    assert email["messageId"] == ["many_header_fields@hostile.example"]
    fetches = [c for c in proxy.commands() if b"HEADER.FIELDS (MESSAGE-ID" in c]
    assert fetches
    assert all(c.endswith(b")]<0.%d> X-GUID)" % HEADER_SECTION_OCTETS) for c in fetches)

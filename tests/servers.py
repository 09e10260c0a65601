"""Real servers for the tests and the demo: Dovecot IMAP and Redis on free loopback ports.

Each server lives in its own directory with a configuration written here (never /etc), is
started without systemd, and is stopped through its pid. The Dovecot configuration follows the
facts recorded in ../shared/harness/README.md: Maildir, users from a passwd file, special-use
folders, and the extensions Dovecot 2.3 offers (CONDSTORE, QRESYNC, MOVE, NOTIFY, ...).

Run ``python -m tests.servers demo DIR`` to start a Dovecot and a Redis with a demo user and a few
messages, and a Postfix to send through where it can run; ``python -m tests.servers demo-send
URL`` prints how to send in it (both used by tools/demo.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import imaplib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from string import Template

LOOPBACK = "127.0.0.1"
FRESH_PASSWORD = "fresh-user-pw"
# carol's password is not ASCII: RFC 7617 credentials are UTF-8 and must reach the upstream so.
DEFAULT_USERS = {"alice": "alice-secret-pw", "bob": "bob-secret-pw", "carol": "pässwörd-✓"}


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: the sockets are held together while the kernel picks, so
    two ports one server needs (API and metrics) cannot come out the same."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port where connections are refused, held for the block: bound but not listening, so
    no server started meanwhile (a FaultProxy, a gateway) can be given it and end up
    connecting to itself."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        yield int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {LOOPBACK}:{port} after {timeout}s")


def make_data_dir(prefix: str) -> Path:
    """A directory Dovecot's mail processes (Debian's ``mail`` user when root) can enter."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    if not cert.exists():
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
        key.chmod(0o600)
    return cert, key


DOVECOT_CONF = Template("""\
instance_name = jg-test-$imap_port
base_dir = $root/run
state_dir = $root/state
log_path = $root/log/dovecot.log
info_log_path = $root/log/dovecot.log
protocols = imap$more_protocols
listen = $listen
$internal
first_valid_uid = $uid
last_valid_uid = $uid
first_valid_gid = $gid
last_valid_gid = $gid
ssl = yes
ssl_cert = <$cert
ssl_key = <$key
disable_plaintext_auth = no
auth_mechanisms = plain login$oauth_mechanisms
auth_failure_delay = 0
mail_location = maildir:~/Maildir
mailbox_list_index = yes
mail_max_userip_connections = 500
verbose_proctitle = yes$trusted$oauth_passdb
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%n $root/passwd$password_mechanisms
}
# Users named t-* log in with one password: each test takes a fresh, empty account.
passdb {
  driver = static
  args = password=$fresh_password
  username_filter = t-*$password_mechanisms
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$root/mail/%n
}
namespace inbox {
  inbox = yes
  separator = /
  prefix =
$specials}
service imap-login {
  inet_listener imap {
    address = $listen
    port = $imap_port
  }
  inet_listener imaps {
    address = $listen
    port = $imaps_port
    ssl = yes
  }
  service_count = 0
  process_min_avail = 1
}
service imap {
  process_limit = 1024
}
$penalty$quota$sending$metadata""")

# RFC 5464 METADATA, its entries kept in one file per user (harness README 1.3).
METADATA_CONF = """
imap_metadata = yes
mail_attribute_dict = file:%h/dovecot-attributes
"""

# The quota plugin as ../shared/harness/README.md (1.2) records it: every user gets the
# same limits; a message-count rule, and quota_max_mail_size (APPEND answers [LIMIT]).
QUOTA_CONF = Template("""
mail_plugins = $$mail_plugins quota
protocol imap {
  mail_plugins = $$mail_plugins imap_quota
}
plugin {
  quota = count:User quota
  quota_vsizes = yes
  quota_rule = *:messages=$messages
  quota_max_mail_size = $max_mail_size
}
""")

# Unless the client's address reaches Dovecot (ID, from login_trusted_networks), every login
# comes from the gateway's one address, and Dovecot's per-IP auth penalty would delay every
# user's next login by seconds after one user's wrong password.
NO_AUTH_PENALTY = """\
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
"""

# Bearer tokens checked by a token-introspection endpoint (RFC 7662) the test runs.
OAUTH2_PASSDB = Template("""
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $root/oauth2.conf
}""")
OAUTH2_CONF = Template("""\
introspection_mode = post
introspection_url = $url
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
""")

# For a Postfix in front (tests.smtp_servers): LMTP delivery (alice@example.com is alice: the
# passdb's username_format %n and the userdb's home by %n drop the domain) and the auth service
# on TCP for Postfix's SASL (smtpd_sasl_type = dovecot).
LMTP_CONF = Template("""
service lmtp {
  inet_listener lmtp {
    address = $listen
    port = $port
  }
}
protocol lmtp {
  postmaster_address = postmaster@example.com
}
""")
SASL_CONF = Template("""
service auth {
  inet_listener sasl {
    address = $listen
    port = $port
  }
}
""")
# Master users log in for any user (SASL PLAIN with the user as authorization identity); the
# user must exist in the ordinary passdbs (pass = yes looks them up there).
MASTER_PASSDB = Template("""
passdb {
  driver = passwd-file
  master = yes
  args = scheme=PLAIN $root/master-passwd
  pass = yes
}
""")


@dataclass
class Dovecot:
    """A Dovecot 2.3 instance with IMAP (plain+STARTTLS) and IMAPS listeners on loopback."""

    root: Path
    users: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_USERS))
    imap_port: int = field(default_factory=free_port)
    imaps_port: int = field(default_factory=free_port)
    # Dovecot's per-IP auth penalty (off by default: see NO_AUTH_PENALTY).
    auth_penalty: bool = False
    # login_trusted_networks: connections from these may name the client's address with ID.
    trusted_networks: str = ""
    # An RFC 7662 endpoint for an oauth2 passdb (OAUTHBEARER, XOAUTH2); None: no tokens.
    oauth2_introspection_url: str | None = None
    # Per-user quota: (messages, largest message in octets); None: no quota plugin.
    quota: tuple[int, int] | None = None
    # Opt-ins for sending tests: an LMTP listener, the auth service on TCP (for Postfix's
    # SASL), and master users (name -> password) who may act for any user.
    lmtp_port: int | None = None
    sasl_port: int | None = None
    master_users: dict[str, str] = field(default_factory=dict)
    # Dovecot's auth_master_user_separator: master users may also log in as "user<c>master"
    # (issue 17's background watching); empty: only SASL PLAIN with an authorization identity.
    master_separator: str = ""
    # IMAP METADATA (RFC 5464), off unless asked: it changes the CAPABILITY other tests see.
    metadata: bool = False

    @property
    def config(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def cert(self) -> Path:
        return self.root / "ssl" / "cert.pem"

    def _identity(self) -> tuple[str, int, int, str]:
        if os.geteuid() == 0:
            mail = pwd.getpwnam("mail")
            internal = "default_internal_user = dovecot\ndefault_login_user = dovenull\n"
            return "mail", mail.pw_uid, mail.pw_gid, internal
        me = pwd.getpwuid(os.geteuid())
        internal = (
            f"default_internal_user = {me.pw_name}\ndefault_login_user = {me.pw_name}\n"
            "service anvil {\n  chroot =\n}\nservice imap-login {\n  chroot =\n}\n"
        )
        return me.pw_name, me.pw_uid, me.pw_gid, internal

    def write_config(self) -> None:
        for sub in ("run", "state", "log", "ssl", "mail"):
            (self.root / sub).mkdir(exist_ok=True)
        _, uid, gid, internal = self._identity()
        os.chown(self.root / "mail", uid, gid)
        cert, key = self_signed_cert(self.root / "ssl")
        passwd = "".join(f"{user}:{{PLAIN}}{pw}::::::\n" for user, pw in self.users.items())
        (self.root / "passwd").write_text(passwd)
        specials = "".join(
            f"  mailbox {name} {{\n    special_use = \\{name}\n    auto = subscribe\n  }}\n"
            for name in ("Drafts", "Sent", "Trash", "Junk", "Archive")
        )
        sending = ""
        if self.lmtp_port is not None:
            sending += LMTP_CONF.substitute(listen=LOOPBACK, port=self.lmtp_port)
        if self.sasl_port is not None:
            sending += SASL_CONF.substitute(listen=LOOPBACK, port=self.sasl_port)
        if self.master_users:
            (self.root / "master-passwd").write_text(
                "".join(f"{user}:{{PLAIN}}{pw}::::::\n" for user, pw in self.master_users.items())
            )
            sending += MASTER_PASSDB.substitute(root=self.root)
            if self.master_separator:
                sending += f"auth_master_user_separator = {self.master_separator}\n"
        oauth = self.oauth2_introspection_url is not None
        if oauth:
            (self.root / "oauth2.conf").write_text(
                OAUTH2_CONF.substitute(url=self.oauth2_introspection_url)
            )
        self.config.write_text(
            DOVECOT_CONF.substitute(
                oauth_mechanisms=" oauthbearer xoauth2" if oauth else "",
                oauth_passdb=OAUTH2_PASSDB.substitute(root=self.root) if oauth else "",
                password_mechanisms="\n  mechanisms = plain login" if oauth else "",
                trusted=(
                    f"\nlogin_trusted_networks = {self.trusted_networks}"
                    if self.trusted_networks
                    else ""
                ),
                penalty="" if self.auth_penalty else NO_AUTH_PENALTY,
                quota=(
                    ""
                    if self.quota is None
                    else QUOTA_CONF.substitute(messages=self.quota[0], max_mail_size=self.quota[1])
                ),
                metadata=METADATA_CONF if self.metadata else "",
                more_protocols=" lmtp" if self.lmtp_port is not None else "",
                sending=sending,
                root=self.root,
                imap_port=self.imap_port,
                imaps_port=self.imaps_port,
                listen=LOOPBACK,
                internal=internal,
                uid=uid,
                gid=gid,
                cert=cert,
                key=key,
                specials=specials,
                fresh_password=FRESH_PASSWORD,
            )
        )

    @property
    def pidfile(self) -> Path:
        return self.root / "run" / "master.pid"

    def start(self) -> None:
        if not self.config.exists():
            self.write_config()
        subprocess.run(
            ["dovecot", "-c", str(self.config)],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.imap_port)
        wait_for_port(self.imaps_port)
        for port in (self.lmtp_port, self.sasl_port):
            if port is not None:
                wait_for_port(port)

    def stop(self) -> None:
        """Stop the master and wait until the port is closed, so a restart can bind it."""
        if not self.pidfile.exists():
            return
        pid = int(self.pidfile.read_text().strip())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise RuntimeError(f"dovecot {pid} did not stop")

    @property
    def url(self) -> str:
        return f"imap://{LOOPBACK}:{self.imap_port}"

    def fresh_user(self) -> str:
        """A new user with an empty mailbox (password FRESH_PASSWORD)."""
        user = "t-" + secrets.token_hex(6)
        self.users[user] = FRESH_PASSWORD
        return user

    def client(self, user: str) -> imaplib.IMAP4:
        """A plain stdlib IMAP client, an independent witness of what the server holds."""
        conn = imaplib.IMAP4(LOOPBACK, self.imap_port)
        conn.login(user, self.users[user])
        return conn


@dataclass
class RedisServer:
    """A throw-away redis-server: no persistence, loopback only."""

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # More redis-server options ("--replicaof", host, port) after the defaults.
    options: tuple[str, ...] = ()

    def start(self, *, daemon: bool = False) -> None:
        """Start; with ``daemon`` it outlives this process (the demo) and writes a pid file."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        command = [
            binary,
            "--bind",
            LOOPBACK,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.root),
            "--protected-mode",
            "yes",
            *self.options,
        ]
        if daemon:
            command += ["--daemonize", "yes", "--pidfile", str(self.root / "redis.pid")]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if daemon:
            self.process.wait(10)
            self.process = None
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"


def demo_messages(user: str, count: int = 5) -> list[tuple[bytes, str]]:
    """A few plain messages for the demo user, newest last, with their flags."""
    start = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    messages = []
    for index in range(count):
        msg = EmailMessage()
        msg["From"] = "Björn Ström <bjorn@example.org>"
        msg["To"] = f"{user}@example.com"
        msg["Subject"] = f"Demo message {index + 1}"
        msg["Date"] = format_datetime(start + timedelta(hours=index))
        msg["Message-ID"] = make_msgid(domain="example.org")
        msg.set_content(f"Hello {user},\n\nthis is demo message number {index + 1}.\n")
        flags = "(\\Seen)" if index % 2 else "()"
        messages.append((msg.as_bytes(), flags))
    return messages


def seed_demo(dovecot: Dovecot, user: str) -> None:
    conn = dovecot.client(user)
    try:
        for raw, flags in demo_messages(user):
            conn.append("INBOX", flags, None, raw)
    finally:
        conn.logout()


# The demo's users: "demo" has a few messages and sends to "friend" (both @DEMO_DOMAIN).
DEMO_USERS = {"demo": "demo-password", "friend": "friend-password"}
DEMO_DOMAIN = "example.com"


def _demo(directory: Path) -> None:
    """Start the demo's servers as daemons and print their settings as shell assignments.

    Where Postfix can run (installed, and this process is root, as Postfix's own start needs),
    a Postfix submission server authenticates the demo users against the Dovecot and delivers
    mail for DEMO_DOMAIN into it over LMTP, so the demo users can send each other mail.
    """
    # tests.smtp_servers builds on this module: imported here, where it is needed.
    from tests.smtp_servers import Postfix

    roots = {name: directory / name for name in ("dovecot", "redis", "postfix")}
    for root in (directory, *roots.values()):
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
    sending = shutil.which("postfix") is not None and os.geteuid() == 0
    ports = {"lmtp_port": free_port(), "sasl_port": free_port()} if sending else {}
    dovecot = Dovecot(roots["dovecot"], users=dict(DEMO_USERS), **ports)
    dovecot.start()
    seed_demo(dovecot, "demo")
    redis = RedisServer(roots["redis"])
    redis.start(daemon=True)
    print(f"GATEWAY_IMAP_URL={dovecot.url}")
    print(f"GATEWAY_REDIS_URL={redis.url}")
    if dovecot.lmtp_port is not None and dovecot.sasl_port is not None:
        postfix = Postfix(
            roots["postfix"],
            sasl_port=dovecot.sasl_port,
            lmtp_port=dovecot.lmtp_port,
            local_domains=DEMO_DOMAIN,
        )
        postfix.start()
        print(f"GATEWAY_SMTP_URL={postfix.url}")
        print(f"GATEWAY_MAIL_DOMAIN={DEMO_DOMAIN}")


def _demo_sending(base_url: str) -> None:
    """Print a request that sends a message from demo to friend through the running demo
    gateway, with demo's account, Drafts, Sent and Identity ids filled in (a JMAP result
    reference cannot reach inside a create, so a client asks for them first)."""
    import httpx

    auth = ("demo", DEMO_USERS["demo"])
    submission = "urn:ietf:params:jmap:submission"
    using = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", submission]
    with httpx.Client(base_url=base_url, auth=auth, follow_redirects=True) as http:
        account = http.get("/.well-known/jmap").json()["primaryAccounts"][submission]
        calls = [
            ["Mailbox/get", {"accountId": account, "properties": ["role"]}, "m"],
            ["Identity/get", {"accountId": account}, "i"],
        ]
        answers = http.post("/jmap/api/", json={"using": using, "methodCalls": calls}).json()
    roles = {m["role"]: m["id"] for m in answers["methodResponses"][0][1]["list"] if m["role"]}
    identity = answers["methodResponses"][1][1]["list"][0]["id"]
    drafts, sent = roles["drafts"], roles["sent"]
    message = {
        "mailboxIds": {drafts: True},
        "keywords": {"$draft": True, "$seen": True},
        "from": [{"email": f"demo@{DEMO_DOMAIN}"}],
        "to": [{"email": f"friend@{DEMO_DOMAIN}"}],
        "subject": "Hello from the demo",
        "bodyStructure": {"type": "text/plain", "partId": "t"},
        "bodyValues": {"t": {"value": "Sent through jmap-gateway and Postfix.\n"}},
    }
    filed = {f"mailboxIds/{drafts}": None, f"mailboxIds/{sent}": True, "keywords/$draft": None}
    request = {
        "using": using,
        "methodCalls": [
            ["Email/set", {"accountId": account, "create": {"m": message}}, "0"],
            [
                "EmailSubmission/set",
                {
                    "accountId": account,
                    "create": {"s": {"identityId": identity, "emailId": "#m"}},
                    "onSuccessUpdateEmail": {"#s": filed},
                },
                "1",
            ],
        ],
    }
    body = json.dumps(request, separators=(",", ":"))
    friend = f"friend:{DEMO_USERS['friend']}"
    lines = [
        f"  sending:      demo@{DEMO_DOMAIN} and friend@{DEMO_DOMAIN} ({friend}) mail each",
        "                other through Postfix, which delivers into the Dovecot. demo sends:",
        f"    curl -u demo:{DEMO_USERS['demo']} -H 'content-type: application/json' \\",
        f"      {base_url}/jmap/api/ -d '{body}'",
        f"  friend reads: curl -L -u {friend} {base_url}/.well-known/jmap (then Email/query)",
    ]
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="start the demo's servers").add_argument("directory", type=Path)
    sub.add_parser("demo-send", help="print how to send in the demo").add_argument("url")
    args = parser.parse_args(argv)
    if args.command == "demo":
        _demo(args.directory)
    else:
        _demo_sending(args.url)


if __name__ == "__main__":
    sys.exit(main())

"""A real Cyrus IMAP 3.6 for the tests: the upstream with OBJECTID (RFC 8474), ACLs and more.

Like :class:`tests.servers.Dovecot`, it lives in its own directory with a configuration written
here (never /etc/imapd.conf or /etc/cyrus.conf), is started without systemd and is stopped
through its pid file. The facts it follows are recorded in ../shared/harness/README.md (section
3): Debian's cyrus-common, cyrus-clients and sasl2-bin packages; users in a sasldb; ``master``
started as root, dropping to the ``cyrus`` user; ``unixhierarchysep`` and ``altnamespace``, so
folders are ``Drafts`` and ``Work/Projects`` as on Dovecot; and the first login of a user
autocreates INBOX and the special-use folders Drafts, Sent, Trash, Junk and Archive.

Debian's cyrus-imapd package (imapd, idled, squatter) conflicts with dovecot-imapd, so it is not
installed: tools/install.sh unpacks it into /opt/jmap-gateway-cyrus (``JG_CYRUS_IMAPD_DIR``).
Where neither that nor /usr/lib/cyrus/bin/imapd exists, the fixture downloads the package and
unpacks it itself into ``extract_dir`` (``JG_CYRUS_EXTRACT``, default /tmp/jg-cyrus-imapd).
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import re
import secrets
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from tests.servers import FRESH_PASSWORD, LOOPBACK, free_port, self_signed_cert, wait_for_port

CYRUS_BIN = Path("/usr/lib/cyrus/bin")
INSTALLED_IMAPD_DIR = Path(os.environ.get("JG_CYRUS_IMAPD_DIR", "/opt/jmap-gateway-cyrus"))
DEFAULT_EXTRACT_DIR = Path(os.environ.get("JG_CYRUS_EXTRACT", "/tmp/jg-cyrus-imapd"))
CYRUS_USER = "cyrus"
# ASCII passwords: the stdlib client's LOGIN sends ASCII only.
CYRUS_USERS = {"alice": "alice-secret-pw", "bob": "bob-secret-pw"}
SPECIAL_USE = {
    "Drafts": "\\Drafts",
    "Sent": "\\Sent",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}

IMAPD_CONF = Template("""\
# Written by tests/cyrus.py for one test instance.
configdirectory: $root/conf
defaultpartition: default
partition-default: $root/spool
proc_path: $root/run/proc
mboxname_lockpath: $root/run/lock
idlesocket: $root/conf/socket/idle
notifysocket: $root/run/socket/notify
lmtpsocket: $root/run/socket/lmtp
servername: localhost
syslog_prefix: jg-cyrus-$imap_port
allowplaintext: yes
sasl_mech_list: PLAIN LOGIN
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $root/conf/sasldb2
unixhierarchysep: yes
altnamespace: yes
virtdomains: off
hashimapspool: false
umask: 077
autocreate_quota: 0
autocreate_post: 1
autocreate_inbox_folders: $folders
autocreate_subscribe_folders: $folders
$specials
conversations: 1
# RFC 5464 entries of the gateway's own (its identities under /private/vendor/jmap-gateway):
# Cyrus refuses vendor entries it has no definition of ("NO Permission denied").
annotation_allow_undefined: 1
conversations_db: twoskip
search_engine: none
tls_server_cert: $cert
tls_server_key: $key
""")

CYRUS_CONF = Template("""\
# Written by tests/cyrus.py: IMAP and IMAPS on loopback only.
START {
  recover cmd="ctl_cyrusdb -C $conf -r"
}
SERVICES {
  imap  cmd="$imapd -C $conf" listen="$listen:$imap_port" prefork=1 maxchild=200
  imaps cmd="$imapd -C $conf -s" listen="$listen:$imaps_port" prefork=0 maxchild=50
}
EVENTS {
  checkpoint cmd="ctl_cyrusdb -C $conf -c" period=30
}
DAEMON {
  idled cmd="$idled -C $conf"
}
""")


def imapd_dir(extract_dir: Path = DEFAULT_EXTRACT_DIR) -> Path:
    """The directory with imapd and idled: the system's, install.sh's, or unpacked here now.

    An unpacked cyrus-imapd must be of cyrus-common's version (its VERSION file says which):
    imapd links to the libraries cyrus-common brings.
    """
    if not (CYRUS_BIN / "master").exists():
        raise RuntimeError("Cyrus IMAP is not installed: run tools/install.sh as root")
    if os.access(CYRUS_BIN / "imapd", os.X_OK):
        return CYRUS_BIN
    version = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "cyrus-common"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    for unpacked in (INSTALLED_IMAPD_DIR, extract_dir):
        stamp = unpacked / "VERSION"
        binaries = unpacked / "usr/lib/cyrus/bin"
        current = stamp.exists() and stamp.read_text().strip() == version
        if current and os.access(binaries / "imapd", os.X_OK):
            return binaries
    return _extract_imapd(extract_dir, version)


def _extract_imapd(extract_dir: Path, version: str) -> Path:
    """``apt-get download`` cyrus-imapd of cyrus-common's version, then ``dpkg-deb -x`` it."""
    with tempfile.TemporaryDirectory(prefix="jg-cyrus-deb-") as download:
        subprocess.run(
            ["apt-get", "download", "-q", f"cyrus-imapd={version}"],
            cwd=download,
            check=True,
            capture_output=True,
        )
        (deb,) = Path(download).glob("cyrus-imapd_*.deb")
        extract_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(extract_dir)], check=True)
    (extract_dir / "VERSION").write_text(version + "\n")
    return extract_dir / "usr/lib/cyrus/bin"


@dataclass
class Cyrus:
    """A Cyrus IMAP 3.6 instance with IMAP (plain+STARTTLS) and IMAPS listeners on loopback."""

    root: Path
    users: dict[str, str] = field(default_factory=lambda: dict(CYRUS_USERS))
    imap_port: int = field(default_factory=free_port)
    imaps_port: int = field(default_factory=free_port)
    extract_dir: Path = DEFAULT_EXTRACT_DIR
    # Opt-in (issue 17's background watching): accounts (name -> password) in Cyrus's
    # proxyservers, which may authenticate as any user (SASL PLAIN with an authorization
    # identity) without being admins; they have no mailbox of their own.
    proxy_servers: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "imapd.conf"

    @property
    def master_config(self) -> Path:
        return self.root / "cyrus.conf"

    @property
    def pidfile(self) -> Path:
        return self.root / "run" / "master.pid"

    @property
    def sasldb(self) -> Path:
        return self.root / "conf" / "sasldb2"

    @property
    def cert(self) -> Path:
        return self.root / "ssl" / "cert.pem"

    def write_config(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("Cyrus's master must start as root (it drops to user cyrus)")
        binaries = imapd_dir(self.extract_dir)
        # imapd binds conf/socket/idle.<pid>: without conf/socket it fails with ENOENT.
        for sub in ("conf/socket", "spool", "run/proc", "run/lock", "run/socket", "ssl", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        cert, key = self_signed_cert(self.root / "ssl")
        folders = " | ".join(SPECIAL_USE)
        specials = "\n".join(f"xlist-{name.lower()}: {name}" for name in SPECIAL_USE)
        self.config.write_text(
            IMAPD_CONF.substitute(
                root=self.root,
                imap_port=self.imap_port,
                folders=folders,
                specials=specials,
                cert=cert,
                key=key,
            )
            + (f"proxyservers: {' '.join(self.proxy_servers)}\n" if self.proxy_servers else "")
        )
        self.master_config.write_text(
            CYRUS_CONF.substitute(
                conf=self.config,
                imapd=binaries / "imapd",
                idled=binaries / "idled",
                listen=LOOPBACK,
                imap_port=self.imap_port,
                imaps_port=self.imaps_port,
            )
        )
        for user, password in {**self.users, **self.proxy_servers}.items():
            self._saslpasswd(user, password)
        self._give_to_cyrus()

    def _give_to_cyrus(self) -> None:
        """Cyrus's processes run as ``cyrus``: its directories, key and sasldb are theirs."""
        cyrus = pwd.getpwnam(CYRUS_USER)
        self.root.chmod(0o755)
        for path in (self.root / "conf", self.root / "spool", self.root / "run", self.root / "ssl"):
            for directory, _, files in os.walk(path):
                os.chown(directory, cyrus.pw_uid, cyrus.pw_gid)
                for name in files:
                    os.chown(Path(directory) / name, cyrus.pw_uid, cyrus.pw_gid)

    def _saslpasswd(self, user: str, password: str) -> None:
        subprocess.run(
            ["saslpasswd2", "-p", "-c", "-f", str(self.sasldb), "-u", "localhost", user],
            input=password.encode(),
            check=True,
            capture_output=True,
        )
        # saslpasswd2 runs as root; the imapd processes (user cyrus) must read the database.
        cyrus = pwd.getpwnam(CYRUS_USER)
        os.chown(self.sasldb, cyrus.pw_uid, cyrus.pw_gid)
        self.sasldb.chmod(0o640)

    def start(self) -> None:
        if self.pidfile.exists() and _alive(int(self.pidfile.read_text().strip())):
            raise RuntimeError(f"a cyrus master already runs from {self.root}")
        if not self.config.exists():
            self.write_config()
        for socket_dir in (self.root / "conf" / "socket", self.root / "run" / "socket"):
            for stale in socket_dir.iterdir():
                stale.unlink()
        self.pidfile.unlink(missing_ok=True)
        subprocess.run(
            [
                str(CYRUS_BIN / "master"),
                "-C",
                str(self.config),
                "-M",
                str(self.master_config),
                "-p",
                str(self.pidfile),
                "-L",
                str(self.root / "log" / "master.log"),
                "-d",
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.imap_port)
            wait_for_port(self.imaps_port)
            for user in self.users:
                self._first_login(user)
        except Exception:
            self.stop()
            raise

    def _first_login(self, user: str, timeout: float = 10.0) -> None:
        """Log in once: Cyrus autocreates INBOX and the special-use folders then."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = self.client(user)
                break
            except (OSError, imaplib.IMAP4.error):
                # master listens before its first imapd takes connections.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        try:
            typ, lines = conn.list('""', "*")
            assert typ == "OK", lines
            found: dict[str, set[str]] = {}
            for line in lines:
                assert isinstance(line, bytes), line
                match = re.match(rb'\(([^)]*)\) "/" "?([^"]*)"?$', line)
                assert match, line
                # Attributes are case-insensitive (RFC 3501 7.2.2); Cyrus sends "\\drafts".
                found[match[2].decode()] = set(match[1].decode().lower().split())
        finally:
            conn.logout()
        expected = {"INBOX", *SPECIAL_USE}
        if not expected <= set(found):
            raise RuntimeError(f"Cyrus did not autocreate {expected - set(found)} for {user}")
        for name, attribute in SPECIAL_USE.items():
            if attribute.lower() not in found[name]:
                raise RuntimeError(f"Cyrus gave {user}'s {name} no {attribute}: {found[name]}")

    def stop(self) -> None:
        """SIGTERM the master (it stops its children) and wait until it has exited.

        A master that gets SIGTERM in its first moments (a failed start) can spin forever
        instead of exiting; it is killed, with its process group, after a grace period.
        """
        if not self.pidfile.exists():
            return
        pid = int(self.pidfile.read_text().strip())
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                if sig == signal.SIGKILL and os.getpgid(pid) == pid:
                    os.killpg(pid, sig)  # master -d leads its own group: its children too
                else:
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if not _alive(pid):
                    self.pidfile.unlink(missing_ok=True)
                    return
                time.sleep(0.05)
        raise RuntimeError(f"cyrus master {pid} did not stop")

    @property
    def url(self) -> str:
        return f"imap://{LOOPBACK}:{self.imap_port}"

    def fresh_user(self) -> str:
        """A new user with an empty account (password FRESH_PASSWORD), folders autocreated."""
        user = "t-" + secrets.token_hex(6)
        self._saslpasswd(user, FRESH_PASSWORD)
        self.users[user] = FRESH_PASSWORD
        self._first_login(user)
        return user

    def client(self, user: str) -> imaplib.IMAP4:
        """A plain stdlib IMAP client, an independent witness of what the server holds."""
        conn = imaplib.IMAP4(LOOPBACK, self.imap_port)
        try:
            conn.login(user, self.users[user])
        except BaseException:
            conn.shutdown()
            raise
        return conn


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie no longer does: its parent has just not reaped it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"

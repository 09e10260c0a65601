#!/usr/bin/env bash
# Install what the gateway, its tests and its demo need, on Debian as root: Dovecot (with its
# LMTP server, dovecot-lmtpd), Redis, Cyrus IMAP, Postfix and OpenSSL from apt (their system
# services are NOT started: the tests and the demo run their own instances on loopback), and the
# gateway with its test, dev and deploy extras in ./.venv.
#
# Cyrus: Debian's cyrus-imapd (imapd, idled, squatter) cannot be installed beside dovecot-imapd
# (both provide imap-server and cyrus-imapd conflicts with it). So only the packages that do not
# conflict are installed, and cyrus-imapd's .deb of the same version as cyrus-common is unpacked
# into $JG_CYRUS_IMAPD_DIR (default /opt/jmap-gateway-cyrus), where tests/cyrus.py finds imapd.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

cyrus_bin=/usr/lib/cyrus/bin
cyrus_imapd_dir=${JG_CYRUS_IMAPD_DIR:-/opt/jmap-gateway-cyrus}

missing=()
[ -x /usr/lib/dovecot/imap ] && command -v dovecot >/dev/null || missing+=(dovecot-imapd)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
[ -x "$cyrus_bin/master" ] || missing+=(cyrus-common)
[ -x "$cyrus_bin/imtest" ] || missing+=(cyrus-clients)
[ -x /usr/sbin/saslpasswd2 ] || missing+=(sasl2-bin)
# Sending (EmailSubmission) is tested against a real Postfix submission service that checks
# passwords through Dovecot's SASL and delivers into Dovecot by LMTP. Postfix comes first: cyrus-
# common depends on "default-mta | mail-transport-agent", and without a mail server in the same
# command apt picks exim4. Preseeded to "No configuration", the system's Postfix does nothing.
[ -x /usr/lib/dovecot/lmtp ] || missing+=(dovecot-lmtpd)
if ! command -v postfix >/dev/null && [ ! -x /usr/sbin/postfix ]; then
  missing=(postfix "${missing[@]}")
fi

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "install.sh: $1; run as root or install them with apt-get" >&2
    exit 1
  fi
}

apt_updated=0
if [ ${#missing[@]} -gt 0 ]; then
  need_root "missing ${missing[*]}"
  # Keep apt from starting system-wide daemons while installing (only if we add the policy).
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
  fi
  if [[ " ${missing[*]} " == *" postfix "* ]]; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  fi
  apt-get update -q
  apt_updated=1
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  [ "$added_policy" = 1 ] && rm -f "$policy"
fi

# cyrus-imapd's binaries, unpacked (never installed) unless the system has them anyway.
if [ ! -x "$cyrus_bin/imapd" ]; then
  version=$(dpkg-query -W -f='${Version}' cyrus-common)
  if [ ! -x "$cyrus_imapd_dir/usr/lib/cyrus/bin/imapd" ] \
    || [ "$(cat "$cyrus_imapd_dir/VERSION" 2>/dev/null)" != "$version" ]; then
    need_root "cyrus-imapd $version is not unpacked in $cyrus_imapd_dir"
    download=$(mktemp -d)
    chown _apt "$download" 2>/dev/null || true  # lets apt download without its root warning
    fetch() { (cd "$download" && apt-get download -q "cyrus-imapd=$version"); }
    if ! fetch; then
      # An old package list may no longer name this version's .deb: refresh it once.
      if [ "$apt_updated" = 1 ] || ! { apt-get update -q && fetch; }; then
        echo "install.sh: apt-get download cyrus-imapd=$version failed" >&2
        exit 1
      fi
    fi
    rm -rf "$cyrus_imapd_dir.new"
    dpkg-deb -x "$download"/cyrus-imapd_*.deb "$cyrus_imapd_dir.new"
    echo "$version" >"$cyrus_imapd_dir.new/VERSION"
    rm -rf "$cyrus_imapd_dir" "$download"
    mv "$cyrus_imapd_dir.new" "$cyrus_imapd_dir"
  fi
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "install.sh: Python 3.11 or newer is required" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The runtime dependencies at the versions the image ships (deploy/constraints.txt).
.venv/bin/python -m pip install -q --constraint deploy/constraints.txt -e '.[test,dev,deploy]'

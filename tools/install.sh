#!/usr/bin/env bash
# Install what the gateway, its tests and its demo need, on Debian as root: Dovecot, Redis and
# OpenSSL from apt (their system services are NOT started: the tests and the demo run their own
# instances on loopback), and the gateway with its test and dev extras in ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/lib/dovecot/imap ] && command -v dovecot >/dev/null || missing+=(dovecot-imapd)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install.sh: missing ${missing[*]}; run as root or install them with apt-get" >&2
    exit 1
  fi
  # Keep apt from starting system-wide daemons while installing (only if we add the policy).
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  [ "$added_policy" = 1 ] && rm -f "$policy"
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "install.sh: Python 3.11 or newer is required" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,dev]'

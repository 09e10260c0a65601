#!/usr/bin/env bash
# The whole test suite: installs what is missing, lints, type-checks, then runs pytest against
# real Dovecot and Redis servers that the fixtures start on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
.venv/bin/ruff check gateway tests bench
.venv/bin/ruff format --check gateway tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"

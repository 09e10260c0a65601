#!/usr/bin/env bash
# Start a local demo: a Dovecot with users "demo" (with a few messages) and "friend", a Redis,
# a Postfix to send through (when run as root with Postfix installed, as tools/install.sh does),
# and the gateway in front of them, all on loopback. Prints the session URL, the credentials
# and, with Postfix, a request that sends a message from demo to friend.
# Run again to restart it; `bash tools/demo.sh stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${DEMO_DIR:-/tmp/jmap-gateway-demo}
PORT=${GATEWAY_PORT:-8080}

stop() {
  for pidfile in "$DEMO/gateway.pid" "$DEMO/redis/redis.pid" "$DEMO/dovecot/run/master.pid" \
    "$DEMO/postfix/spool/pid/master.pid"; do
    if [ -s "$pidfile" ]; then kill "$(tr -d ' ' <"$pidfile")" 2>/dev/null || true; fi
  done
  sleep 0.5
  rm -rf "$DEMO"
}

if [ "${1:-}" = stop ]; then stop; echo "demo stopped"; exit 0; fi

bash tools/install.sh
stop
mkdir -p "$DEMO"
eval "$(.venv/bin/python -m tests.servers demo "$DEMO")"
export GATEWAY_IMAP_URL GATEWAY_REDIS_URL GATEWAY_PORT="$PORT"
if [ -n "${GATEWAY_SMTP_URL:-}" ]; then export GATEWAY_SMTP_URL GATEWAY_MAIL_DOMAIN; fi
export GATEWAY_PUBLIC_URL="http://127.0.0.1:$PORT"
nohup setsid .venv/bin/jmap-gateway serve >"$DEMO/gateway.log" 2>&1 &
echo $! >"$DEMO/gateway.pid"
for _ in $(seq 100); do
  if curl -fs -o /dev/null -u demo:demo-password -L "http://127.0.0.1:$PORT/.well-known/jmap"; then
    cat <<TXT
jmap-gateway demo is running (log: $DEMO/gateway.log)
  session URL:  http://127.0.0.1:$PORT/.well-known/jmap
  user:         demo
  password:     demo-password
  try:          curl -L -u demo:demo-password http://127.0.0.1:$PORT/.well-known/jmap
  push:         curl -N -u demo:demo-password 'http://127.0.0.1:$PORT/jmap/eventsource/?types=*&closeafter=no&ping=30'
                (then change mail over IMAP or the API: a "state" event arrives; WebSocket: ws://127.0.0.1:$PORT/jmap/ws, subprotocol jmap)
  stop:         bash tools/demo.sh stop
TXT
    if [ -n "${GATEWAY_SMTP_URL:-}" ]; then
      .venv/bin/python -m tests.servers demo-send "http://127.0.0.1:$PORT"
    else
      echo "  (no sending: Postfix needs root and the postfix package; see tools/install.sh)"
    fi
    exit 0
  fi
  sleep 0.1
done
echo "the gateway did not start; see $DEMO/gateway.log" >&2
tail -20 "$DEMO/gateway.log" >&2
exit 1

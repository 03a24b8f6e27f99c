#!/usr/bin/env bash
# A throwaway nats-server with JetStream for the cluster tests (tests/cluster_test.ts), on
# loopback only, with its store in a temporary folder.
#
#   eval "$(bash scripts/nats.sh start)"   # installs nats-server if missing; exports NATS_URL
#   bash scripts/nats.sh stop              # stops it and removes its store
#
# `start` prints shell assignments and nothing else on stdout. When nats-server cannot be had
# (no apt, no network), it prints a warning on stderr and no NATS_URL: the cluster tests then
# skip, and the rest of the suite runs as usual.
set -euo pipefail
STATE="${NATS_STATE_FILE:-${TMPDIR:-/tmp}/denomp-nats.state}"

start() {
  if ! command -v nats-server >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server; } >&2 || true
    fi
  fi
  if ! command -v nats-server >/dev/null 2>&1; then
    echo "scripts/nats.sh: nats-server is not available; the cluster tests will be skipped" >&2
    return 0
  fi
  local dir port pid i
  dir="$(mktemp -d "${TMPDIR:-/tmp}/denomp-nats.XXXXXX")"
  # A port in the dynamic range that nothing listens on (bash's /dev/tcp connects or fails).
  for i in $(seq 1 50); do
    port=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  done
  nats-server -js -a 127.0.0.1 -p "$port" -sd "$dir" >"$dir/server.log" 2>&1 &
  pid=$!
  for i in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
  done
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "scripts/nats.sh: nats-server did not start:" >&2
    cat "$dir/server.log" >&2
    return 0
  fi
  printf '%s %s\n' "$pid" "$dir" >"$STATE"
  echo "export NATS_URL=nats://127.0.0.1:$port"
}

stop() {
  [ -f "$STATE" ] || return 0
  local pid dir i
  read -r pid dir <"$STATE"
  if kill "$pid" 2>/dev/null; then
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  case "$dir" in "${TMPDIR:-/tmp}"/denomp-nats.*) rm -rf "$dir" ;; esac
  rm -f "$STATE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

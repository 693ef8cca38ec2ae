#!/usr/bin/env bash
# Stops the services `make up` started (SIGTERM: they finish in-flight work first).
set -uo pipefail
cd "$(dirname "$0")/.."
for pidfile in .beckon/*.pid; do
  [ -e "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "stopped $(basename "$pidfile" .pid)"
  fi
  rm -f "$pidfile"
done

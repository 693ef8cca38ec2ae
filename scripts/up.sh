#!/usr/bin/env bash
# Starts every Beckon service on this machine against the local PostgreSQL and RabbitMQ,
# seeds a demo organization, token, project and Live survey, and prints a dispatch that works.
# Called by `make up` (which builds first and makes sure the dependencies run).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN_DIR=${BIN_DIR:-target/debug}
STATE=.beckon
mkdir -p "$STATE/logs"
export BECKON_DATABASE_URL=${BECKON_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/beckon}
export BECKON_HTTP_ADDR=${BECKON_HTTP_ADDR:-127.0.0.1:8080}
export BECKON_PUBLIC_URL=${BECKON_PUBLIC_URL:-http://$BECKON_HTTP_ADDR}
export RUST_LOG=${RUST_LOG:-info}
# The key that seals webhook signing secrets, message bodies and magic-link tokens: generated
# once, kept here, unless the environment gives one (BECKON_SECRET_KEY) or a list of them
# (BECKON_SECRET_KEYS, newest first; the services refuse both at once).
if [ -z "${BECKON_SECRET_KEY:-}" ] && [ -z "${BECKON_SECRET_KEYS:-}" ]; then
  [ -s "$STATE/secret.key" ] || head -c 32 /dev/urandom | base64 >"$STATE/secret.key"
  chmod 600 "$STATE/secret.key"
  BECKON_SECRET_KEY=$(cat "$STATE/secret.key")
  export BECKON_SECRET_KEY
fi
# Let webhooks reach receivers on this machine (refused by default in production).
export BECKON_WEBHOOK_ALLOWED_CIDRS=${BECKON_WEBHOOK_ALLOWED_CIDRS:-127.0.0.0/8,::1/128}

db_name=${BECKON_DATABASE_URL##*/}
admin_url=${BECKON_DATABASE_URL%/*}/postgres
if [ "$(psql "$admin_url" -qAtc "select count(*) from pg_database where datname = '$db_name'")" = 0 ]; then
  echo "==> creating database $db_name"
  psql "$admin_url" -qc "create database \"$db_name\""
fi
"$BIN_DIR/beckon" migrate

scripts/down.sh >/dev/null 2>&1 || true
for service in matcher invitation webhook-delivery ingest-api; do
  nohup "$BIN_DIR/$service" >"$STATE/logs/$service.log" 2>&1 &
  echo $! >"$STATE/$service.pid"
  echo "==> started $service (pid $!, log $STATE/logs/$service.log)"
done

deadline=$((SECONDS + 60))
until curl -fsS "http://127.0.0.1:9100/readyz" >/dev/null 2>&1; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "the gateway did not become ready; see $STATE/logs/ingest-api.log" >&2
    exit 1
  fi
  sleep 0.3
done

demo=$("$BIN_DIR/beckon" --output json demo)
echo "$demo" >"$STATE/demo.json"
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])" <<<"$demo"; }
token=$(field token)
project=$(field project_id)

cat <<MSG

Beckon is up: gateway on http://$BECKON_HTTP_ADDR (OpenAPI at /openapi.json).
Demo organization token (shown once, also in $STATE/demo.json): $token

Fire a lifecycle event and get the invitation back:

curl -sS -X POST http://$BECKON_HTTP_ADDR/api/v1/lifecycle/dispatch -H "Authorization: Bearer $token" -H "Content-Type: application/json" -d '{"project_id": "$project", "user_ref": "user_abc123", "event": "subscription_cancelled"}'

Receive webhooks: point a subscription at any endpoint on this machine, e.g.

curl -sS -X POST http://$BECKON_HTTP_ADDR/api/v1/projects/$project/webhooks -H "Authorization: Bearer $token" -H "Content-Type: application/json" -d '{"url": "http://127.0.0.1:9000/hooks"}'

Stop everything with: make down
MSG

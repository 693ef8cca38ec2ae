#!/usr/bin/env bash
# Makes sure PostgreSQL and RabbitMQ run on this machine: installs them from Debian's packages
# when they are missing, starts them when they are stopped, and waits until both answer.
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=
install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2 deadline=$((SECONDS + ${3:-90}))
  until port_open "$port"; do
    if [ "$SECONDS" -ge "$deadline" ]; then log "$name did not open port $port"; return 1; fi
    sleep 0.5
  done
}

# --- PostgreSQL -------------------------------------------------------------------------------
fresh_pg=
if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  install postgresql postgresql-client
  fresh_pg=1
fi
if ! port_open 5432; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi
wait_port 5432 PostgreSQL
if ! psql "postgres://postgres@127.0.0.1:5432/postgres" -qAtc 'select 1' >/dev/null 2>&1; then
  if [ -n "$fresh_pg" ]; then
    # A fresh Debian cluster asks for passwords on TCP; this is a development machine, so let
    # local TCP connections in the way the test suite and `make up` expect.
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    log "trusting local TCP connections in $hba"
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    sleep 1
  fi
  psql "postgres://postgres@127.0.0.1:5432/postgres" -qAtc 'select 1' >/dev/null \
    || { log "cannot connect to PostgreSQL as postgres@127.0.0.1"; exit 1; }
fi

# --- RabbitMQ ---------------------------------------------------------------------------------
if ! command -v rabbitmq-server >/dev/null; then
  install rabbitmq-server
fi
if ! port_open 5672; then
  log "starting RabbitMQ"
  as_root rabbitmq-server -detached || true
  as_root timeout 120 rabbitmqctl await_startup >/dev/null 2>&1 || true
fi
wait_port 5672 RabbitMQ 120
log "PostgreSQL and RabbitMQ are up"

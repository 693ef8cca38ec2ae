#!/usr/bin/env bash
# A PgBouncer in transaction pooling in front of the machine's PostgreSQL, for the pooler test
# (tests/tests/pooler.rs starts and stops it through this script), with few server
# connections so that every client shares them:
#
#   127.0.0.1:6442  ->  127.0.0.1:5432   pool_mode = transaction, 4 server connections per database
#
# Transaction pooling needs PgBouncer 1.21 or later (protocol-level prepared statements,
# `max_prepared_statements`); Debian 12 ships 1.18. So PgBouncer runs from Debian trixie's
# package (1.24), in a minimal trixie chroot made by `debootstrap` and kept outside the
# checkout in $BECKON_PGBOUNCER_DIR (default /var/tmp/beckon-pgbouncer), built once (about a
# minute; ~150 MB). It shares only the host's network.
#
# Usage: scripts/pgbouncer.sh start | stop | version
set -euo pipefail
root=${BECKON_PGBOUNCER_DIR:-/var/tmp/beckon-pgbouncer}
chroot_dir=$root/trixie
port=${BECKON_PGBOUNCER_PORT:-6442}
mirror=${BECKON_DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf '==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
in_chroot() { as_root chroot "$chroot_dir" "$@"; }

build_chroot() {
  # A marker written last: a build interrupted half-way is redone from scratch.
  [ -f "$root/.built" ] && return 0
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  if findmnt -rn -o TARGET | grep -q "^$chroot_dir/"; then
    log "something is mounted under $chroot_dir; not rebuilding it"
    exit 1
  fi
  as_root rm -rf --one-file-system "$chroot_dir"
  as_root mkdir -p "$chroot_dir"
  log "building a Debian trixie chroot with pgbouncer in $chroot_dir (once; about a minute)"
  as_root debootstrap --variant=minbase --include=pgbouncer trixie "$chroot_dir" "$mirror" \
    >"$root/debootstrap.log" 2>&1 \
    || { log "debootstrap failed; see $root/debootstrap.log"; exit 1; }
  in_chroot apt-get clean
  as_root touch "$root/.built"
}

stop() {
  local pid
  if [ -f "$chroot_dir/tmp/pgbouncer.pid" ]; then
    pid=$(cat "$chroot_dir/tmp/pgbouncer.pid")
    as_root kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      as_root kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    as_root rm -f "$chroot_dir/tmp/pgbouncer.pid"
  fi
}

case "${1:-}" in
  start)
    as_root mkdir -p "$root"
    exec 9>"$root/.lock"
    flock 9
    build_chroot
    stop
    as_root tee "$chroot_dir/etc/pgbouncer/beckon.ini" >/dev/null <<EOF
[databases]
* = host=127.0.0.1 port=5432 user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = /etc/pgbouncer/beckon-users.txt
pool_mode = transaction
max_prepared_statements = 200
default_pool_size = 4
max_db_connections = 8
max_client_conn = 1000
ignore_startup_parameters = extra_float_digits
logfile = /tmp/pgbouncer.log
pidfile = /tmp/pgbouncer.pid
EOF
    echo '"postgres" ""' | as_root tee "$chroot_dir/etc/pgbouncer/beckon-users.txt" >/dev/null
    as_root rm -f "$chroot_dir/tmp/pgbouncer.log"
    # The daemon must not inherit the lock (fd 9), or it would hold it for its whole life.
    in_chroot /usr/sbin/runuser -u postgres -- pgbouncer -d /etc/pgbouncer/beckon.ini 9>&-
    for _ in $(seq 1 50); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then exit 0; fi
      sleep 0.1
    done
    log "pgbouncer did not start; see $chroot_dir/tmp/pgbouncer.log"
    exit 1
    ;;
  stop) stop ;;
  version) in_chroot pgbouncer --version | head -1 ;;
  *)
    sed -n '2,14p' "$0" >&2
    exit 2
    ;;
esac

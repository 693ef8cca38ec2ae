#!/usr/bin/env bash
# Runs a RabbitMQ 4.0 node beside the machine's own RabbitMQ (Debian 12 ships 3.10), so the
# broker-facing tests can run against both versions (`make test-rabbitmq4`).
#
#   scripts/rabbitmq4.sh start    build the chroot once if needed, start the node, wait for it
#   scripts/rabbitmq4.sh stop     stop the node and unmount what `start` mounted
#   scripts/rabbitmq4.sh status   say whether it runs, and its AMQP URL
#
# The node lives in a minimal Debian trixie chroot made by `debootstrap` from Debian's own
# packages (trixie's `rabbitmq-server` is 4.0 with Erlang 27), kept outside the checkout in
# $BECKON_RABBITMQ4_DIR (default /var/tmp/beckon-rabbitmq4) and built once (under a minute on a
# good link; ~330 MB). It has its own node name, ports and data directory, and shares only the
# host's epmd and network, so it never touches the machine's node on 5672. Each start begins
# with an empty data directory: the node is for tests, and a run interrupted earlier must not
# leave queues behind.
# Every step is idempotent: `start` on a running node and `stop` on a stopped one do nothing.
set -euo pipefail

root=${BECKON_RABBITMQ4_DIR:-/var/tmp/beckon-rabbitmq4}
chroot_dir=$root/trixie
amqp_port=${BECKON_RABBITMQ4_PORT:-5673}
# Erlang distribution port; the CLI tools take ports from dist_port + 10000 upwards.
dist_port=${BECKON_RABBITMQ4_DIST_PORT:-25673}
node=rabbit4@localhost
mirror=${BECKON_DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf '==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Runs a command inside the chroot as the `rabbitmq` user, with the node's environment.
in_chroot() {
  as_root chroot "$chroot_dir" /usr/sbin/runuser -u rabbitmq -- \
    env HOME=/var/lib/rabbitmq LANG=C.UTF-8 "$@"
}
# `rabbitmqctl` of the chroot's node; never the machine's own node.
ctl() { in_chroot rabbitmqctl -n "$node" "$@"; }

mount_all() {
  # /proc for Erlang and the init scripts, /dev for /dev/null and /dev/urandom.
  mountpoint -q "$chroot_dir/proc" || as_root mount -t proc proc "$chroot_dir/proc"
  mountpoint -q "$chroot_dir/dev" || as_root mount --bind /dev "$chroot_dir/dev"
}

unmount_all() {
  local m
  for m in dev proc; do
    if mountpoint -q "$chroot_dir/$m"; then as_root umount "$chroot_dir/$m"; fi
  done
}

build_chroot() {
  # A marker written last: a build interrupted half-way is redone from scratch.
  [ -f "$root/.built" ] && return 0
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  # Never delete through a mount: with /dev still bound, `rm -rf` would empty the host's.
  unmount_all
  if findmnt -rn -o TARGET | grep -q "^$chroot_dir/"; then
    log "something is still mounted under $chroot_dir; not rebuilding it"
    exit 1
  fi
  as_root rm -rf --one-file-system "$chroot_dir"
  as_root mkdir -p "$chroot_dir"
  log "building a Debian trixie chroot in $chroot_dir (once; about a minute)"
  as_root debootstrap --variant=minbase trixie "$chroot_dir" "$mirror" >"$root/debootstrap.log" 2>&1 \
    || { log "debootstrap failed; see $root/debootstrap.log"; exit 1; }
  # Name resolution for apt, and `localhost` for the node name.
  as_root cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf"
  as_root cp /etc/hosts "$chroot_dir/etc/hosts"
  # Never let a package's maintainer script start a service inside the chroot.
  printf '#!/bin/sh\nexit 101\n' | as_root tee "$chroot_dir/usr/sbin/policy-rc.d" >/dev/null
  as_root chmod 755 "$chroot_dir/usr/sbin/policy-rc.d"
  mount_all
  log "installing rabbitmq-server in the chroot"
  as_root chroot "$chroot_dir" apt-get update -qq
  as_root chroot "$chroot_dir" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends rabbitmq-server >"$root/apt.log" 2>&1 \
    || { log "installing rabbitmq-server failed; see $root/apt.log"; exit 1; }
  as_root chroot "$chroot_dir" apt-get clean
  as_root touch "$root/.built"
}

configure() {
  # Read by every RabbitMQ script in the chroot (server and CLI), so `rabbitmqctl` there
  # addresses this node by default. The listener is on loopback only, like the host's node.
  as_root tee "$chroot_dir/etc/rabbitmq/rabbitmq-env.conf" >/dev/null <<EOF
NODENAME=$node
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=$amqp_port
DIST_PORT=$dist_port
export ERL_EPMD_ADDRESS=127.0.0.1
EOF
  as_root tee "$chroot_dir/etc/rabbitmq/rabbitmq.conf" >/dev/null <<EOF
listeners.tcp.default = 127.0.0.1:$amqp_port
loopback_users.guest = true
EOF
}

# Ids of the processes whose root directory is the chroot (all of them are the node's).
chroot_pids() {
  local dir pid
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    if [ "$(as_root readlink "$dir/root" 2>/dev/null)" = "$chroot_dir" ]; then printf '%s ' "$pid"; fi
  done
}

running() { mountpoint -q "$chroot_dir/proc" && ctl -q ping >/dev/null 2>&1; }

start() {
  as_root mkdir -p "$root"
  # One build at a time, even when two runs start together.
  exec 9>"$root/.lock"
  flock 9
  build_chroot
  mount_all
  configure
  if running; then
    log "RabbitMQ 4 ($node) already runs on 127.0.0.1:$amqp_port"
    return 0
  fi
  if port_open "$amqp_port"; then
    log "port $amqp_port is taken by something else; set BECKON_RABBITMQ4_PORT"
    exit 1
  fi
  # A fresh data directory: queues left by an interrupted earlier run would expire mid-run.
  as_root rm -rf "$chroot_dir/var/lib/rabbitmq/mnesia"
  as_root rm -f "$chroot_dir/var/log/rabbitmq/"*.log
  log "starting RabbitMQ 4 ($node) on 127.0.0.1:$amqp_port"
  # The node must not inherit the lock (fd 9), or it would hold it for its whole life.
  in_chroot rabbitmq-server -detached 9>&-
  # `-detached` returns before the node registers with epmd, and `await_startup` gives up at
  # once on a node it cannot reach: wait for it to answer first, then for it to boot.
  local deadline=$((SECONDS + 120))
  until ctl -q ping >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then break; fi
    sleep 1
  done
  if ! ctl -q --timeout 120 await_startup >/dev/null; then
    log "RabbitMQ 4 did not start; logs in $chroot_dir/var/log/rabbitmq/"
    exit 1
  fi
  log "RabbitMQ $(ctl -q version 2>/dev/null) is up: amqp://guest:guest@127.0.0.1:$amqp_port/%2f"
}

stop() {
  if [ ! -d "$chroot_dir/var/lib/rabbitmq" ]; then
    log "no RabbitMQ 4 chroot in $chroot_dir"
    return 0
  fi
  if mountpoint -q "$chroot_dir/proc" && ctl -q ping >/dev/null 2>&1; then
    log "stopping RabbitMQ 4 ($node)"
    ctl -q stop >/dev/null
  fi
  # `stop` returns while the node's processes are still exiting, and anything running with
  # its root in the chroot keeps the mounts busy: wait for them, then end what is left (an
  # epmd the node started when the host had none) by its own process id.
  local deadline=$((SECONDS + 30)) pids signals=(TERM KILL)
  while pids=$(chroot_pids) && [ -n "$pids" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      if [ ${#signals[@]} = 0 ]; then
        log "processes $pids still run in the chroot; not unmounting"
        exit 1
      fi
      log "sending SIG${signals[0]} to what still runs in the chroot: $pids"
      # shellcheck disable=SC2086 # one word per process id
      as_root kill -s "${signals[0]}" $pids 2>/dev/null || true
      signals=("${signals[@]:1}")
      deadline=$((SECONDS + 10))
    fi
    sleep 0.5
  done
  unmount_all
  log "RabbitMQ 4 stopped"
}

status() {
  if [ -d "$chroot_dir/var/lib/rabbitmq" ] && running; then
    echo "running: $node, amqp://guest:guest@127.0.0.1:$amqp_port/%2f ($(ctl -q version))"
  else
    echo "stopped"
    return 3
  fi
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 {start|stop|status}" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this machine, beside the machine's own broker, for the
# cluster fault test (`make chaos-cluster`). Each node runs Debian's rabbitmq-server as the
# `rabbitmq` user with its own node name, ports and data directory, and shares the machine's
# epmd and Erlang cookie:
#
#   node                    AMQP             distribution
#   beckon-c1@localhost     127.0.0.1:5681   25681
#   beckon-c2@localhost     127.0.0.1:5682   25682
#   beckon-c3@localhost     127.0.0.1:5683   25683
#
# Usage: scripts/rabbitmq-cluster.sh start | stop | stop-node N | start-node N | leader QUEUE | urls
#   start          start the three nodes (fresh data) and join them into one cluster
#   stop           stop them and delete their data
#   stop-node N    stop node N's broker application (the node stays, as a crashed broker would)
#   start-node N   start it again and wait until it runs
#   leader QUEUE   the node (1, 2 or 3) leading a quorum queue
#   urls           the AMQP URLs of the three nodes, comma-separated (BECKON_AMQP_URL)
set -euo pipefail
base=${BECKON_CLUSTER_DIR:-/var/tmp/beckon-rabbitmq-cluster}
nodes=(1 2 3)

node_name() { echo "beckon-c$1@localhost"; }

# Runs a RabbitMQ command as the rabbitmq user with node $1's environment.
as_node() {
  local n=$1; shift
  local dir=$base/c$n
  su rabbitmq -s /bin/sh -c "cd /var/lib/rabbitmq && HOME=/var/lib/rabbitmq \
    RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf \
    RABBITMQ_NODENAME=$(node_name "$n") RABBITMQ_NODE_PORT=568$n RABBITMQ_DIST_PORT=2568$n \
    RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins \
    RABBITMQ_MNESIA_BASE=$dir/mnesia RABBITMQ_LOG_BASE=$dir/log RABBITMQ_PID_FILE=$dir/pid \
    ERL_EPMD_ADDRESS=127.0.0.1 $*"
}

ctl() { local n=$1; shift; as_node "$n" /usr/lib/rabbitmq/bin/rabbitmqctl -n "$(node_name "$n")" "$@"; }

# Waits until node $1 runs: it registers with epmd some seconds after it is started, and
# `await_startup` gives up at once on a node that is not registered yet.
wait_node() {
  local n=$1 deadline=$((SECONDS + 120))
  until ctl "$n" await_startup --timeout 120 >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      echo "node $(node_name "$n") did not start; see $base/c$n/log" >&2
      return 1
    fi
    sleep 1
  done
}

start_node() {
  as_node "$1" /usr/lib/rabbitmq/bin/rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_node "$1"
}

case "${1:-}" in
  start)
    "$0" stop >/dev/null 2>&1 || true
    for n in "${nodes[@]}"; do
      dir=$base/c$n
      mkdir -p "$dir/mnesia" "$dir/log"
      # Not the machine's config: its listener (5672) and node name belong to its own broker.
      printf 'listeners.tcp.local = 127.0.0.1:568%s\nloopback_users.guest = true\n' "$n" >"$dir/rabbitmq.conf"
      printf '[].\n' >"$dir/enabled_plugins"
      # Distribution on loopback only, as the machine's own node.
      echo 'export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"' >"$dir/rabbitmq-env.conf"
      chown -R rabbitmq:rabbitmq "$dir"
    done
    pids=()
    for n in "${nodes[@]}"; do
      start_node "$n" &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    for n in 2 3; do
      ctl "$n" stop_app >/dev/null
      ctl "$n" join_cluster "$(node_name 1)" >/dev/null 2>&1
      ctl "$n" start_app >/dev/null
      wait_node "$n"
    done
    ctl 1 cluster_status | grep -A4 -i "running nodes" >&2 || true
    ;;
  stop)
    for n in "${nodes[@]}"; do
      ctl "$n" stop >/dev/null 2>&1 || true
    done
    rm -rf "$base"
    ;;
  stop-node) ctl "$2" stop_app >/dev/null ;;
  start-node) ctl "$2" start_app >/dev/null; wait_node "$2" ;;
  leader)
    # The quorum queue's leader, as the node number.
    for n in "${nodes[@]}"; do
      if leader=$(ctl "$n" list_queues -q --no-table-headers name leader 2>/dev/null | awk -v q="$2" '$1 == q {print $2}'); then
        [ -n "$leader" ] && { echo "${leader#beckon-c}" | cut -d@ -f1; exit 0; }
      fi
    done
    exit 1
    ;;
  urls)
    echo "amqp://guest:guest@127.0.0.1:5681/%2f,amqp://guest:guest@127.0.0.1:5682/%2f,amqp://guest:guest@127.0.0.1:5683/%2f"
    ;;
  *)
    sed -n '2,17p' "$0" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# A PostgreSQL and a RabbitMQ that speak only TLS, beside the machine's own servers, for the
# TLS tests (tests/tests/tls.rs starts and stops them through this script). Both run from
# Debian's packages, as their own users, with certificates made here:
#
#   ca.pem / ca.key           the CA that signs the servers' and the client's certificates
#   other-ca.pem              a CA that signs nothing here (a wrong CA)
#   server.pem / server.key   for localhost (not for 127.0.0.1: verify-full to it fails)
#   client.pem / client.key   the client certificate both servers require
#
#   server                   port                                 accepts
#   PostgreSQL               127.0.0.1:5442                       TLS only, with a client certificate
#   RabbitMQ beckon-tls      127.0.0.1:5691 (amqps)               TLS only, with a client certificate
#                            (distribution 25691)
#
# Usage: scripts/tls-servers.sh start | stop | dir
set -euo pipefail
base=${BECKON_TLS_DIR:-/var/tmp/beckon-tls}
pg_port=${BECKON_TLS_PG_PORT:-5442}
amqps_port=${BECKON_TLS_AMQPS_PORT:-5691}
dist_port=$((amqps_port + 20000))
node=beckon-tls@localhost
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

as_node() {
  su rabbitmq -s /bin/sh -c "cd /var/lib/rabbitmq && HOME=/var/lib/rabbitmq \
    RABBITMQ_CONF_ENV_FILE=$base/rabbitmq/rabbitmq-env.conf \
    RABBITMQ_NODENAME=$node RABBITMQ_NODE_PORT=$((amqps_port - 1)) RABBITMQ_DIST_PORT=$dist_port \
    RABBITMQ_CONFIG_FILE=$base/rabbitmq/rabbitmq.conf \
    RABBITMQ_ENABLED_PLUGINS_FILE=$base/rabbitmq/enabled_plugins \
    RABBITMQ_MNESIA_BASE=$base/rabbitmq/mnesia RABBITMQ_LOG_BASE=$base/rabbitmq/log \
    RABBITMQ_PID_FILE=$base/rabbitmq/pid ERL_EPMD_ADDRESS=127.0.0.1 $*"
}

ctl() { as_node /usr/lib/rabbitmq/bin/rabbitmqctl -n "$node" "$@"; }

certificates() {
  local d=$base/certs
  mkdir -p "$d"
  cd "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=Beckon test CA" -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=Some other CA" -keyout other-ca.key -out other-ca.pem 2>/dev/null
  for who in server client; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=$who" -keyout "$who.key" -out "$who.csr" 2>/dev/null
    # PKCS#8, the form every client library here reads.
    openssl pkcs8 -topk8 -nocrypt -in "$who.key" -out "$who.key.p8"
    mv "$who.key.p8" "$who.key"
  done
  printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  for who in server client; do
    openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile "$who.ext" -out "$who.pem" 2>/dev/null
  done
  chmod 644 ./*.pem
  chmod 600 ./*.key
  cd - >/dev/null
}

start_postgres() {
  local d=$base/postgres
  mkdir -p "$d"
  cp "$base/certs/server.pem" "$base/certs/server.key" "$base/certs/ca.pem" "$d/"
  chown -R postgres:postgres "$d"
  chmod 700 "$d"
  chmod 600 "$d/server.key"
  su postgres -s /bin/sh -c "$pg_bin/initdb -D $d/data -A trust -U postgres >/dev/null"
  cat >>"$d/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$d'
ssl = on
ssl_cert_file = '$d/server.pem'
ssl_key_file = '$d/server.key'
ssl_ca_file = '$d/ca.pem'
max_connections = 100
fsync = off
EOF
  # TLS only, and only with a client certificate the CA signed.
  cat >"$d/data/pg_hba.conf" <<EOF
local     all all                trust
hostssl   all all 127.0.0.1/32   trust clientcert=verify-ca
hostnossl all all 127.0.0.1/32   reject
EOF
  su postgres -s /bin/sh -c "$pg_bin/pg_ctl -D $d/data -l $d/log -w start >/dev/null"
}

start_rabbitmq() {
  local d=$base/rabbitmq
  mkdir -p "$d/mnesia" "$d/log"
  cp "$base/certs/server.pem" "$base/certs/server.key" "$base/certs/ca.pem" "$d/"
  cat >"$d/rabbitmq.conf" <<EOF
listeners.tcp = none
listeners.ssl.default = 127.0.0.1:$amqps_port
ssl_options.cacertfile = $d/ca.pem
ssl_options.certfile = $d/server.pem
ssl_options.keyfile = $d/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
loopback_users.guest = true
EOF
  printf '[].\n' >"$d/enabled_plugins"
  echo 'export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"' >"$d/rabbitmq-env.conf"
  chown -R rabbitmq:rabbitmq "$d"
  chmod 600 "$d/server.key"
  as_node /usr/lib/rabbitmq/bin/rabbitmq-server -detached >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 120))
  until ctl await_startup --timeout 120 >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      echo "node $node did not start; see $d/log" >&2
      return 1
    fi
    sleep 1
  done
}

case "${1:-}" in
  start)
    "$0" stop >/dev/null 2>&1 || true
    mkdir -p "$base"
    chmod 755 "$base"
    certificates
    start_postgres
    start_rabbitmq
    echo "$base"
    ;;
  stop)
    ctl stop >/dev/null 2>&1 || true
    if [ -d "$base/postgres/data" ]; then
      su postgres -s /bin/sh -c "$pg_bin/pg_ctl -D $base/postgres/data -m immediate -w stop" >/dev/null 2>&1 || true
    fi
    rm -rf "$base"
    ;;
  dir) echo "$base" ;;
  *)
    sed -n '2,17p' "$0" >&2
    exit 2
    ;;
esac

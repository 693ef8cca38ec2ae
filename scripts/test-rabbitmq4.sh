#!/usr/bin/env bash
# Runs the tests that talk to the broker against RabbitMQ 4.0 (`make test-rabbitmq4`): starts
# the node of scripts/rabbitmq4.sh on its own port, runs the bus, worker, CLI and end-to-end
# tests against it, and stops the node again, whether the tests passed or not. The machine's
# own RabbitMQ (3.10, port 5672) and PostgreSQL are used as usual and are never restarted:
# the tests that restart infrastructure are `#[ignore]`d and not run here.
#
# Extra arguments go to `cargo nextest run`, e.g. `scripts/test-rabbitmq4.sh -E 'test(dlq)'`.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${BECKON_RABBITMQ4_PORT:-5673}
export BECKON_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:$port/%2f"
cargo=${CARGO:-cargo}

# Set before starting, so a start that fails half-way is cleaned up too.
trap 'scripts/rabbitmq4.sh stop' EXIT
scripts/rabbitmq4.sh start

# The Python verifiers and other tools some end-to-end tests use.
eval "$(scripts/test-tools.sh)"
# The harness would otherwise build the binaries itself, once per test binary.
"$cargo" build --workspace --bins
export BECKON_E2E_SKIP_BUILD=1
"$cargo" nextest run --no-fail-fast \
  -p beckon-bus -p beckon-worker -p beckon-cli -p beckon-e2e "$@"

#!/usr/bin/env bash
# Deletes the queues and exchanges earlier test runs left on the local broker (names start
# with `t` and a 32-digit hex prefix). Tests delete their own when they finish; this catches
# what an interrupted run left, so it cannot expire all at once in the middle of the next run.
set -euo pipefail
BIN_DIR=${BIN_DIR:-target/debug}
pattern='^t[0-9a-f]{32}\.'
{
  rabbitmqctl list_queues -q --no-table-headers name 2>/dev/null | grep -E "$pattern" | sed 's/^/queue /' || true
  rabbitmqctl list_exchanges -q --no-table-headers name 2>/dev/null | grep -E "$pattern" | sed 's/^/exchange /' || true
} | "$BIN_DIR/clean-test-broker"

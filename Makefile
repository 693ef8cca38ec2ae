# The few commands a newcomer needs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
PROFILE ?= debug
BIN_DIR = $(or $(CARGO_TARGET_DIR),target)/$(PROFILE)
RELEASE_FLAG = $(if $(filter release,$(PROFILE)),--release,)

.PHONY: help up down deps test lint test-only test-rabbitmq4 schemas fmt bench chaos chaos-cluster

help: ## List the commands
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

deps: ## Install (if missing) and start PostgreSQL and RabbitMQ
	@scripts/ensure-deps.sh

up: deps ## Bring the whole system up on this machine with demo data, and print a curl line
	$(CARGO) build --workspace --bins $(RELEASE_FLAG)
	@BIN_DIR=$(BIN_DIR) scripts/up.sh

down: ## Stop the services `make up` started
	@scripts/down.sh

test: deps lint test-only ## Run the whole suite (formatting, clippy, unit and end-to-end tests)

CARGO_MACHETE_VERSION = 0.9.2
CARGO_DENY_VERSION = 0.20.2
lint: ## cargo fmt --check, clippy with warnings denied, no unused dependency (cargo machete), licenses, bans and sources (cargo deny)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@cargo-machete --version 2>/dev/null | grep -q '$(CARGO_MACHETE_VERSION)' || \
	  $(CARGO) install --locked --quiet cargo-machete@$(CARGO_MACHETE_VERSION)
	cargo-machete
	@cargo-deny --version 2>/dev/null | grep -q '$(CARGO_DENY_VERSION)' || \
	  $(CARGO) install --locked --quiet cargo-deny@$(CARGO_DENY_VERSION)
	cargo-deny --log-level error --locked check licenses bans sources

test-only: ## Only the tests (needs `make deps`); broker restarts and the browser run last, alone
	$(CARGO) build --workspace --bins
	@BIN_DIR=$(BIN_DIR) scripts/clean-test-broker.sh
	@eval "$$(scripts/test-tools.sh)" && scripts/validate-deploy.sh && export BECKON_E2E_SKIP_BUILD=1 && \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast && \
	  $(CARGO) nextest run --workspace --no-fail-fast --run-ignored only --test-threads 1 \
	    -E 'not test(=nothing_accepted_is_lost_when_the_node_leading_the_queues_stops)'; \
	else \
	  $(CARGO) test --workspace --no-fail-fast && \
	  $(CARGO) test --workspace --no-fail-fast -- --ignored --test-threads 1 \
	    --skip nothing_accepted_is_lost_when_the_node_leading_the_queues_stops; \
	fi

test-rabbitmq4: deps ## The broker-facing tests against RabbitMQ 4.0 (a chroot node on port 5673)
	@CARGO=$(CARGO) scripts/test-rabbitmq4.sh

BENCH_RUNS ?= 3
BENCH_SECONDS ?= 8
bench: deps ## Measure the whole system under load (release builds); writes BENCHMARKS.md
	$(CARGO) build --release --workspace --bins
	BECKON_E2E_SKIP_BUILD=1 BECKON_BENCH_COMMAND="make bench BENCH_RUNS=$(BENCH_RUNS) BENCH_SECONDS=$(BENCH_SECONDS)" \
	  $(or $(CARGO_TARGET_DIR),target)/release/beckon-bench --runs $(BENCH_RUNS) --seconds $(BENCH_SECONDS) --out BENCHMARKS.md

CHAOS_RATE ?= 200
CHAOS_PHASE_SECONDS ?= 10
CHAOS_DB_OUTAGE_SECONDS ?= 60
chaos: deps ## Kill each service, restart RabbitMQ, stop PostgreSQL 60 s, under load; print what was lost (0)
	$(CARGO) build --release --workspace --bins
	BECKON_E2E_SKIP_BUILD=1 BECKON_CHAOS_RATE=$(CHAOS_RATE) BECKON_CHAOS_PHASE_SECONDS=$(CHAOS_PHASE_SECONDS) \
	  BECKON_CHAOS_DB_OUTAGE_SECONDS=$(CHAOS_DB_OUTAGE_SECONDS) \
	  $(CARGO) nextest run --release -p beckon-e2e --test chaos --run-ignored only --no-capture \
	  -E 'test(=nothing_accepted_is_lost_when_services_the_broker_or_the_database_die)'

chaos-cluster: deps ## Stop the RabbitMQ node leading the queues of a 3-node cluster under load; print what was lost (0)
	$(CARGO) build --release --workspace --bins
	trap 'scripts/rabbitmq-cluster.sh stop' EXIT; scripts/rabbitmq-cluster.sh start && \
	BECKON_TEST_AMQP_URL=$$(scripts/rabbitmq-cluster.sh urls) BECKON_E2E_SKIP_BUILD=1 \
	  BECKON_CHAOS_RATE=$(CHAOS_RATE) BECKON_CHAOS_PHASE_SECONDS=$(CHAOS_PHASE_SECONDS) \
	  $(CARGO) nextest run --release -p beckon-e2e --test chaos --run-ignored only --no-capture \
	  -E 'test(=nothing_accepted_is_lost_when_the_node_leading_the_queues_stops)'

schemas: ## Regenerate proto-schemas/ and openapi.json from the Rust types
	BECKON_BLESS_SCHEMAS=1 $(CARGO) test -p beckon-domain --lib envelope::tests::committed_envelope_schemas
	BECKON_BLESS_SCHEMAS=1 $(CARGO) test -p beckon-webhooks --lib payload::tests::committed_webhook_schemas
	BECKON_BLESS_SCHEMAS=1 $(CARGO) test -p ingest-api --test openapi_committed

fmt: ## Format the code
	$(CARGO) fmt --all

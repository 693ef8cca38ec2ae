#!/usr/bin/env bash
# Installs the third-party tools the tests use, once, outside the checkout, and prints the
# `export` lines that point the tests at them (`eval "$(scripts/test-tools.sh)"`):
# - the `standardwebhooks` verifier from PyPI (signatures are checked by a library no one here
#   wrote);
# - `kubernetes-validate` from PyPI, to check the Kubernetes manifests offline;
# - `schemathesis` from PyPI, to fuzz the gateway from its served OpenAPI spec;
# - `openapi-python-client` from PyPI (in a venv of its own: its pins are not schemathesis'),
#   to generate a client from the committed openapi.json and run the quick start with it;
# - `podman-compose` from PyPI, to bring up deploy/compose.yaml with Podman (scripts/image.sh);
# - `playwright-core` from npm and Debian's `chromium`, for the real-browser test of the
#   respond page.
set -euo pipefail
tools=${BECKON_TOOLS_DIR:-$HOME/.cache/beckon-tools}
log() { printf '==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

venv=$tools/venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import standardwebhooks' 2>/dev/null \
   || [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/schemathesis" ] \
   || [ ! -x "$venv/bin/podman-compose" ]; then
  log "installing standardwebhooks, kubernetes-validate, schemathesis and podman-compose into $venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    'standardwebhooks==1.0.0' 'kubernetes-validate==1.37.0' 'schemathesis==4.32.5' \
    'podman-compose==1.6.0' >&2
fi

client_venv=$tools/client-venv
if [ ! -x "$client_venv/bin/openapi-python-client" ]; then
  log "installing openapi-python-client into $client_venv"
  python3 -m venv "$client_venv" >&2
  "$client_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    'openapi-python-client==0.29.1' >&2
fi

node_dir=$tools/node
if [ ! -d "$node_dir/node_modules/playwright-core" ]; then
  log "installing playwright-core into $node_dir"
  mkdir -p "$node_dir"
  npm install --silent --no-audit --no-fund --prefix "$node_dir" 'playwright-core@1' >&2
fi

if ! command -v chromium >/dev/null; then
  log "installing Debian's chromium"
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
fi

echo "export BECKON_TEST_PYTHON=$venv/bin/python"
echo "export BECKON_KUBERNETES_VALIDATE=$venv/bin/kubernetes-validate"
echo "export BECKON_SCHEMATHESIS=$venv/bin/schemathesis"
echo "export BECKON_OPENAPI_PYTHON_CLIENT=$client_venv/bin/openapi-python-client"
echo "export BECKON_CLIENT_PYTHON=$client_venv/bin/python"
echo "export BECKON_PODMAN_COMPOSE=$venv/bin/podman-compose"
echo "export BECKON_TEST_NODE_PATH=$node_dir/node_modules"
echo "export BECKON_TEST_CHROMIUM=$(command -v chromium)"

#!/usr/bin/env bash
# Installs the third-party tools the tests use, once, outside the checkout:
# the `standardwebhooks` verifier from PyPI (webhook signatures are checked by a library no one
# here wrote). Prints the path of the Python that has them.
set -euo pipefail
tools=${BECKON_TOOLS_DIR:-$HOME/.cache/beckon-tools}
venv=$tools/venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import standardwebhooks' 2>/dev/null; then
  echo "==> installing standardwebhooks into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'standardwebhooks==1.0.0' >&2
fi
echo "$venv/bin/python"

#!/usr/bin/env bash
# Creates (once) the Python environment of the server test tools in .cache/venv-server and
# prints its python path. Needs python3-venv (Debian) and access to PyPI the first time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.cache/venv-server"
stamp="$venv/.requirements"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv" >&2
fi
if ! cmp -s "$root/scripts/requirements-server.txt" "$stamp"; then
  "$venv/bin/pip" install -q -r "$root/scripts/requirements-server.txt" >&2
  cp "$root/scripts/requirements-server.txt" "$stamp"
fi
echo "$venv/bin/python"

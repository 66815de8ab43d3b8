#!/usr/bin/env bash
# Set up (first time) and run the server with the built-in demo desktop on 127.0.0.1:5900.
# Extra arguments go to `twistd spice`, e.g. scripts/run-demo.sh --port 5901
#
# scripts/setup.sh (apt packages, .venv, pip install .) runs only when needed: when .venv
# has no twistd, or when what an install is made from changed since the last one here
# (the build files, setup.sh, and every source file of the packages, C sources of
# extensions included). A stamp in .venv holds the hash of all of those.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=.venv/.spice-twisted-installed

install_inputs_hash() {
  local paths=()
  for p in setup.py setup.cfg pyproject.toml MANIFEST.in scripts/setup.sh spice_twisted admin_ui twisted src; do
    [ -e "$p" ] && paths+=("$p")
  done
  find "${paths[@]}" -type f \
    ! -path '*/__pycache__/*' ! -name '*.pyc' ! -name '*.so' ! -name '*.pyd' ! -path '*.egg-info/*' ! -path 'build/*' \
    -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

want=$(install_inputs_hash)
if [ ! -x .venv/bin/twistd ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  scripts/setup.sh
  echo "$want" >"$stamp"
fi
exec .venv/bin/twistd --nodaemon --pidfile= spice "$@"

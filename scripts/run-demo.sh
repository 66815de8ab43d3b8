#!/usr/bin/env bash
# Set up (first time) and run the server with the built-in demo desktop on 127.0.0.1:5900.
# Extra arguments go to `twistd spice`, e.g. scripts/run-demo.sh --port 5901
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/twistd --nodaemon --pidfile= spice "$@"

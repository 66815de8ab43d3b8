#!/usr/bin/env bash
# Set up (apt + pip, first time) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
set +e
# Two workers (pytest-xdist): most tests wait on real servers, clients and clocks, not
# the CPU. SPICE_TEST_WORKERS=0 runs them in this one process.
.venv/bin/python -m pytest -p no:cacheprovider -n "${SPICE_TEST_WORKERS:-2}" "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit $rc

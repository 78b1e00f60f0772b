#!/usr/bin/env bash
# Set up (see setup.sh) and run every check: lint, types, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check proxy tests
.venv/bin/ruff format --check proxy tests
.venv/bin/mypy
# Three workers on two cores: most end-to-end tests wait on real-time calls, not on the
# CPU.  A module stays on one worker (its module-scoped worlds are built once), and the
# slowest modules start first (tests/conftest.py).  RECPROXY_TEST_WORKERS=0: one process.
.venv/bin/python -m pytest -q -p no:cacheprovider -n "${RECPROXY_TEST_WORKERS:-3}" --dist loadscope "$@"

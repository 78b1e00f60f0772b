#!/usr/bin/env bash
# Set up (see setup.sh) and run every check: lint, types, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check proxy tests
.venv/bin/ruff format --check proxy tests
.venv/bin/mypy
# Given arguments (a test file, -k ...): one pytest run with them, as asked.
if [ $# -gt 0 ]; then
    exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
fi
# The whole suite in two phases, each in two pytest-xdist workers (two cores): first the
# tests that are bound by the CPU, then those that place real calls in real time (SIPp,
# softphones, the browser, the README and the wheel), so no call waits behind a busy core.  A
# module stays on one worker (--dist loadscope: its module-scoped world is built once),
# and the slowest modules start first (tests/conftest.py).
real_time=(tests/e2e tests/console tests/test_readme.py tests/test_wheel.py)
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadscope \
    "${real_time[@]/#/--ignore=}" tests || status=$?
.venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadscope \
    "${real_time[@]}" || status=$?
exit $status

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
# The whole suite in phases, the first two in two pytest-xdist workers (two cores): first the
# tests that are bound by the CPU, then those that place real calls in real time (SIPp,
# softphones, the browser, the README and the wheel), so no call waits behind a busy core.  A
# module stays on one worker (--dist loadscope: its module-scoped world is built once),
# and the slowest modules start first (tests/conftest.py).
# Last, alone in one process, the tests that load the machine on purpose (floods of
# INVITEs, TLS handshakes and REGISTER guesses beside recorded calls): beside the other
# real-time tests they would starve a softphone playing the notice, and they measure
# the loss a flood adds, which needs the cores to themselves.
real_time=(tests/e2e tests/console tests/test_readme.py tests/test_wheel.py)
floods=(tests/e2e/test_flood.py tests/e2e/test_tls_flood.py tests/e2e/test_register.py)
# Each phase lists its slowest tests, to keep the whole well inside CI's 15 minutes.
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadscope --durations=10 \
    "${real_time[@]/#/--ignore=}" tests || status=$?
.venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadscope --durations=15 \
    "${floods[@]/#/--ignore=}" "${real_time[@]}" || status=$?
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=5 "${floods[@]}" || status=$?
exit $status

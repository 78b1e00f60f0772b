#!/usr/bin/env bash
# Set up (see setup.sh) and run every check: lint, types, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check proxy tests
.venv/bin/ruff format --check proxy tests
.venv/bin/mypy
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"

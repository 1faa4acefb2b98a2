#!/usr/bin/env bash
# Set up for the tests and run the whole suite, slow soak and fault tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh --dev
exec .venv/bin/python -m pytest -m "slow or not slow" "$@"

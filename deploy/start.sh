#!/usr/bin/env bash
# Run the main job on whatever is configured (the embedded default with no .env).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python run_migration.py

#!/usr/bin/env bash
# The README's test command: install everything (CPU torch pinned) and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[dev]"
python3 -m pytest -q

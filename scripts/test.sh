#!/usr/bin/env bash
# README's test command: installs what the tests need, builds every suite and runs them all with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f tests/js/package-lock.json ] && command -v npm >/dev/null; then
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi
cd build
ctest --output-on-failure -j"$(nproc)" --timeout 1200

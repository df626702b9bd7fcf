#!/usr/bin/env bash
# README's test command: installs what the tests need, builds every suite and runs them all with ctest, then the
# sanitizer and fuzzing run (scripts/sanitize.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f tests/js/package-lock.json ] && command -v npm >/dev/null; then
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd build && ctest --output-on-failure -j"$(nproc)" --timeout 1200)
# The robustness run: every C++ suite again under AddressSanitizer + UndefinedBehaviorSanitizer (clang), each
# libFuzzer target for 30 s, then the threaded suites and the concurrent SDK tests under ThreadSanitizer.
# OPTIQ_SKIP_SANITIZE=1 skips it (a quick local check).
if [ "${OPTIQ_SKIP_SANITIZE:-0}" != 1 ]; then
  bash scripts/sanitize.sh "${OPTIQ_FUZZ_SECONDS:-30}"
fi

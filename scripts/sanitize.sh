#!/usr/bin/env bash
# The robustness run: a clang build with AddressSanitizer + UndefinedBehaviorSanitizer (and libFuzzer
# instrumentation) in build-san; every C++ test suite runs there (and the SDK integration tests against the
# sanitized server too with OPTIQ_SANITIZE_JS=1: ~10 more minutes on 2 cores), then every fuzz target for SECONDS
# (default 30).
#   scripts/sanitize.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PKGS="clang libclang-rt-14-dev libomp-dev"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi
CC=clang CXX=clang++ cmake -S . -B build-san -G Ninja -DCMAKE_BUILD_TYPE=Release -DOPTIQ_FUZZ=ON \
  -DOPTIQ_SANITIZE=address,undefined >/dev/null
cmake --build build-san -j"$(nproc)"
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
exclude=sdk_integration
if [ "${OPTIQ_SANITIZE_JS:-0}" = 1 ]; then exclude='^$'; fi
(cd build-san && ctest --output-on-failure -j"$(nproc)" --timeout 2400 -E "$exclude")
bash scripts/fuzz.sh "${1:-30}" build-san

#!/usr/bin/env bash
# The robustness run, with clang:
# 1. address: AddressSanitizer + UndefinedBehaviorSanitizer (and libFuzzer instrumentation) in build-san: every
#    test suite, the SDK integration tests against the sanitized server included (~10 minutes of them on 2
#    cores), then every fuzz target for SECONDS (default 30).
# 2. thread: ThreadSanitizer in build-tsan (without OpenMP, src/util/omp.h says why) for what runs threads of
#    its own: the engine suite (scheduler, prompt cache, adapter scopes), the chat suite (the shared template
#    cache), then the SDK tests that drive the server with concurrent clients (SERVER_TESTS) against the
#    TSan-built server (scripts/tsan.supp: what is not ours to check).
# Sanitizer reports are written to <tree>/san-reports; any report fails the run and is printed.
#   scripts/sanitize.sh [SECONDS] [address|thread]     (both by default)
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
which="${2:-address thread}"

SERVER_TESTS="server.test.mjs security.test.mjs adapters.test.mjs load.test.mjs disconnect.test.mjs soak.test.mjs hybrid.test.mjs"
status=0

# Prints TREE's sanitizer reports, if any, and marks the run failed.
reports() {
  if compgen -G "$1/san-reports/report*" >/dev/null; then
    echo "sanitizer reports in $1:" >&2
    cat "$1"/san-reports/report* >&2
    status=1
  fi
}

if [[ " $which " == *" address "* ]]; then
  CC=clang CXX=clang++ cmake -S . -B build-san -G Ninja -DCMAKE_BUILD_TYPE=Release -DOPTIQ_FUZZ=ON \
    -DOPTIQ_SANITIZE=address,undefined >/dev/null
  cmake --build build-san -j"$(nproc)"
  rm -rf build-san/san-reports && mkdir -p build-san/san-reports
  (
    log="log_path=$PWD/build-san/san-reports/report"
    export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=0:$log"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:$log"
    export OPTIQ_SANITIZER=address
    cd build-san && ctest --output-on-failure -j"$(nproc)" --timeout 2400
  ) || status=1
  reports build-san
  bash scripts/fuzz.sh "${1:-30}" build-san || status=1
fi

if [[ " $which " == *" thread "* ]]; then
  CC=clang CXX=clang++ cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Release -DOPTIQ_SANITIZE=thread >/dev/null
  cmake --build build-tsan -j"$(nproc)" --target optiq test_engine test_chat
  rm -rf build-tsan/san-reports && mkdir -p build-tsan/san-reports
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/scripts/tsan.supp:log_path=$PWD/build-tsan/san-reports/report"
  build-tsan/test_engine --gtest_brief=1 || status=1
  build-tsan/test_chat --gtest_brief=1 || status=1
  if command -v node >/dev/null && [ -d tests/js/node_modules ]; then
    (cd tests/js && OPTIQ_BIN="$PWD/../../build-tsan/optiq" OPTIQ_SANITIZER=thread \
      node --test --test-timeout=900000 $SERVER_TESTS) || status=1
  fi
  reports build-tsan
fi
exit $status

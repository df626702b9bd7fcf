#!/usr/bin/env bash
# Installs the Debian build dependencies and builds optiq (Release) into ./build.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PKGS="g++ cmake pkg-config ninja-build libcpp-httplib-dev nlohmann-json3-dev libpcre2-dev libutf8proc-dev
  libsentencepiece-dev libcurl4-openssl-dev libssl-dev libgtest-dev libgmock-dev googletest"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"

#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Proves the run-time dispatch: runs the C++ kernel test executable under qemu-user emulating a
# Westmere CPU (SSE4.2, no AVX). Every CPU check must then pick the scalar tier, and any AVX
# instruction reached from baseline code dies with SIGILL. Needs qemu-x86_64 (Debian package
# qemu-user) and a built build-cmake/geb_kernel_tests (scripts/test-native.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir="${GEB_CMAKE_BUILD_DIR:-build-cmake}"
exe="$build_dir/geb_kernel_tests"
if ! command -v qemu-x86_64 >/dev/null; then
  echo "test-qemu-westmere: qemu-x86_64 not found; install it with: apt-get install qemu-user" >&2
  exit 1
fi
if [[ ! -x "$exe" ]]; then
  echo "test-qemu-westmere: $exe not found; build it first with: bash scripts/test-native.sh" >&2
  exit 1
fi
if [[ "$(uname -m)" != "x86_64" ]]; then
  echo "test-qemu-westmere: this check is for x86-64 hosts; skipping on $(uname -m)" >&2
  exit 0
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
GEB_TEST_EMULATED_CPU=1 qemu-x86_64 -cpu Westmere "$exe" >"$log" 2>&1 || status=$?
cat "$log"
if [[ $status -ne 0 ]]; then
  echo "test-qemu-westmere: geb_kernel_tests failed under Westmere emulation (exit $status)" >&2
  exit 1
fi
# The emulated CPU has no AVX, so only the scalar tier may have run.
if ! grep -qx "tiers under test: scalar" "$log"; then
  echo "test-qemu-westmere: expected only the scalar tier under Westmere emulation" >&2
  exit 1
fi
echo "test-qemu-westmere: ok (scalar tier, no illegal instruction)"

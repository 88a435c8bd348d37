#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Cross-compiles the C++ kernel test executable for aarch64 Linux (cmake/toolchain-aarch64.cmake,
# Debian's g++-aarch64-linux-gnu) and runs it under qemu-aarch64 twice:
#   - on qemu's default "max" CPU, which has the dot product: tiers scalar, neon and neondot;
#   - on a Cortex-A53 (Armv8.0-A, no dot product): tiers scalar and neon only, which proves the
#     run-time dispatch, and a forced GEB_CPU_ISA=neondot must then be rejected.
# Each run prints its "N passed, M failed" line. Needs g++-aarch64-linux-gnu, qemu-user and
# cmake. Builds in build-aarch64/ (GEB_AARCH64_BUILD_DIR overrides); extra arguments go to the
# CMake configure step.
#
# Debian 12's cross g++ 12.2.0 needs test_kernels.cpp built without auto-vectorization;
# CMakeLists.txt sets that for GCC < 13 on aarch64.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir="${GEB_AARCH64_BUILD_DIR:-build-aarch64}"
sysroot=/usr/aarch64-linux-gnu
for tool in aarch64-linux-gnu-g++ qemu-aarch64 cmake; do
  if ! command -v "$tool" >/dev/null; then
    echo "test-aarch64-qemu: $tool not found; install it with: apt-get install g++-aarch64-linux-gnu qemu-user cmake" >&2
    exit 1
  fi
done

cmake -S . -B "$build_dir" -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchain-aarch64.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DGEB_WERROR=ON "$@"
cmake --build "$build_dir" -j 2 --target geb_kernel_tests
exe="$build_dir/geb_kernel_tests"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
failed=0

# Runs the tests on one emulated CPU and checks which tiers they covered.
run_on_cpu() {
  local cpu="$1" expected_tiers="$2"
  local status=0
  echo "== qemu-aarch64 -cpu $cpu"
  # /proc/cpuinfo under qemu-user is the x86-64 host's file, and GEB_TEST_EMULATED_CPU=1 makes
  # test_cpu.cpp account for that.
  GEB_TEST_EMULATED_CPU=1 qemu-aarch64 -L "$sysroot" -cpu "$cpu" "$exe" >"$log" 2>&1 || status=$?
  cat "$log"
  if [[ $status -ne 0 ]]; then
    echo "test-aarch64-qemu: geb_kernel_tests failed on $cpu (exit $status)" >&2
    failed=1
  fi
  if ! grep -qx "tiers under test: $expected_tiers" "$log"; then
    echo "test-aarch64-qemu: expected \"tiers under test: $expected_tiers\" on $cpu" >&2
    failed=1
  fi
}

run_on_cpu max "scalar neon neondot"
run_on_cpu cortex-a53 "scalar neon"

# A tier the CPU cannot run must be rejected (exit 2) before any test runs, not crash on SIGILL.
echo "== qemu-aarch64 -cpu cortex-a53 with GEB_CPU_ISA=neondot"
status=0
GEB_CPU_ISA=neondot qemu-aarch64 -L "$sysroot" -cpu cortex-a53 "$exe" >"$log" 2>&1 || status=$?
cat "$log"
if [[ $status -ne 2 ]] || ! grep -q "not supported by this CPU" "$log"; then
  echo "test-aarch64-qemu: expected GEB_CPU_ISA=neondot to be rejected with exit 2 on cortex-a53, got exit $status" >&2
  failed=1
fi

if [[ $failed -ne 0 ]]; then
  exit 1
fi
echo "test-aarch64-qemu: ok (max: scalar neon neondot; cortex-a53: scalar neon)"

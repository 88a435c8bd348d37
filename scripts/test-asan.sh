#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds (scripts/build-debug-asan.sh) and runs vitest against the ASan/UBSan addon: `npm run test:asan [-- vitest args]`, for
# example `npm run test:asan -- tests/engine.test.ts`. Node itself is not built with ASan, so
# the ASan runtime is preloaded into every node process; GEB_CPU_BINARY points lib/native.ts at
# the debug addon. Leak checking is off because Node frees little at exit by design.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir="${GEB_ASAN_BUILD_DIR:-build-asan}"
bash scripts/build-debug-asan.sh

asan_lib="$(g++ -print-file-name=libasan.so)"
ubsan_lib="$(g++ -print-file-name=libubsan.so)"
for lib in "$asan_lib" "$ubsan_lib"; do
  if [[ ! -e "$lib" ]]; then
    echo "test-asan: $lib not found; install g++ (it ships libasan and libubsan)" >&2
    exit 1
  fi
done

export LD_PRELOAD="$asan_lib:$ubsan_lib"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export GEB_CPU_BINARY="$(pwd)/$build_dir/geb_cpu.node"
exec npx vitest run "$@"

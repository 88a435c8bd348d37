#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the addon with AddressSanitizer and UndefinedBehaviorSanitizer into
# build-asan/geb_cpu.node (CMake, optimized with debug info), away from node-gyp's build/.
# scripts/test-asan.sh runs vitest against it.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir="${GEB_ASAN_BUILD_DIR:-build-asan}"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGEB_SANITIZE=ON -DGEB_BUILD_ADDON=ON
cmake --build "$build_dir" -j 2 --target geb_cpu_addon
echo "built $(pwd)/$build_dir/geb_cpu.node"

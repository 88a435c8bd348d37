#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the C++ kernel test executable with CMake (no Node involved) and runs it through ctest:
# once over every tier this CPU supports, once forced to the scalar tier. Extra arguments go to
# the CMake configure step, e.g. `-DGEB_SANITIZE=ON`. Warnings are errors here. The output is
# verbose, so each run's "N passed, M failed" line shows.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir="${GEB_CMAKE_BUILD_DIR:-build-cmake}"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DGEB_WERROR=ON "$@"
cmake --build "$build_dir" -j 2
ctest --test-dir "$build_dir" --output-on-failure --verbose

#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fails when an object compiled with AVX2/AVX-512/NEON flags defines a weak or unique symbol
# (nm types W, V, u), such as an out-of-line inline function or template instantiation. The
# linker keeps one copy of each such symbol, so it may pick the AVX copy for scalar callers too,
# and an older CPU then dies with SIGILL. In ISA files, keep such code static or in an
# anonymous namespace.
# Reads the objects of the CMake release build (scripts/test-native.sh). Unoptimized builds keep
# many such symbols out of line, so run it on an -O2 or -O3 build.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir="${GEB_CMAKE_BUILD_DIR:-build-cmake}"
shopt -s nullglob globstar
objects=("$build_dir"/CMakeFiles/geb_kernels_*.dir/**/*.o)
if ((${#objects[@]} == 0)); then
  echo "check-isa-symbols: no kernel objects under $build_dir; build them with scripts/test-native.sh" >&2
  exit 1
fi

report="$(mktemp)"
trap 'rm -f "$report"' EXIT
for object in "${objects[@]}"; do
  # DW.ref.__gxx_personality_v0 is a pointer to the C++ exception personality routine, not code.
  nm -C --defined-only "$object" \
    | awk -v file="$object" '$2 ~ /^[WVu]$/ && $3 !~ /^DW\.ref\./ { $1 = ""; print file ":" $0 }' >>"$report"
done
if [[ -s "$report" ]]; then
  echo "check-isa-symbols: ISA-specific objects define symbols the linker may merge with baseline code:" >&2
  cat "$report" >&2
  exit 1
fi
echo "check-isa-symbols: ${#objects[@]} ISA objects define no weak or unique symbols"

# SPDX-License-Identifier: MIT
# CMake toolchain for cross-compiling the native sources to aarch64 Linux with Debian's
# g++-aarch64-linux-gnu, so the C++ kernel tests can run under qemu-aarch64 on an x86-64 host
# (scripts/test-aarch64-qemu.sh). GEB_AARCH64_PREFIX overrides the tool prefix.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

if(NOT DEFINED GEB_AARCH64_PREFIX)
  set(GEB_AARCH64_PREFIX aarch64-linux-gnu-)
endif()
set(CMAKE_C_COMPILER ${GEB_AARCH64_PREFIX}gcc)
set(CMAKE_CXX_COMPILER ${GEB_AARCH64_PREFIX}g++)

# Libraries and headers come from the cross sysroot only; programs (cmake's own helpers) from
# the host.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# ctest runs the cross-built executables through qemu.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu)

# SPDX-License-Identifier: MIT
# node-gyp build of the geb_cpu addon (build/Release/geb_cpu.node). prebuildify and the
# compile-on-install fallback (`npm rebuild geb-cpu`) both use this file; CMakeLists.txt builds
# the same sources for the C++ kernel tests. Sources come from scripts/list-sources.mjs, which
# globs native/, so a new file needs no edit here.
#
# Each kernel ISA group is its own static library compiled with only that ISA's flags. The core,
# the CPU detection and the binding use baseline flags, so the addon loads on any x86-64 or
# aarch64 CPU and picks a kernel tier at run time. Never add -march=native here.
#
# The ASan/UBSan debug addon is built by CMake instead (`npm run build:debug-asan`), in its own
# folder, so it never replaces this build.
{
  "target_defaults": {
    "include_dirs": [
      "native",
      "<!(node -p \"require('node-addon-api').include_dir\")",
    ],
    "defines": [
      "NAPI_VERSION=8",
      "NAPI_CPP_EXCEPTIONS",
      "NODE_ADDON_API_DISABLE_DEPRECATED",
      # A JS exception that cannot be thrown because the environment is shutting down (a worker
      # terminated during a forward step) is dropped instead of ending the process.
      "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
    ],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
    "cflags": ["-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra", "-pthread"],
    "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-fvisibility-inlines-hidden"],
    "ldflags": ["-pthread"],
    "libraries": ["-pthread"],
    "configurations": {
      "Release": {
        "cflags": ["-O3"],
        "defines": ["NDEBUG"],
      },
      "Debug": {
        "cflags": ["-g", "-O1", "-fno-omit-frame-pointer"],
      },
    },
    "xcode_settings": {
      "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
      "GCC_ENABLE_CPP_RTTI": "YES",
      "GCC_SYMBOLS_PRIVATE_EXTERN": "YES",
      "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
      "CLANG_CXX_LIBRARY": "libc++",
      "MACOSX_DEPLOYMENT_TARGET": "11.0",
      "WARNING_CFLAGS": ["-Wall", "-Wextra"],
    },
    "msvs_settings": {
      "VCCLCompilerTool": {
        "ExceptionHandling": 1,
        "AdditionalOptions": ["/std:c++17"],
      },
    },
    "conditions": [
      ["OS=='win'", {"defines": ["_HAS_EXCEPTIONS=1", "NOMINMAX"]}],
    ],
  },
  "targets": [
    {
      # Portable engine code, CPU detection and the scalar reference kernels.
      "target_name": "geb_core",
      "type": "static_library",
      "sources": [
        "<!@(node scripts/list-sources.mjs core)",
        "<!@(node scripts/list-sources.mjs scalar)",
      ],
    },
    {
      "target_name": "geb_cpu",
      "sources": ["<!@(node scripts/list-sources.mjs binding)"],
      "defines": ["GEB_CPU_VERSION=<!(node -p \"require('./package.json').version\")"],
      "dependencies": ["geb_core"],
      "conditions": [
        ["target_arch=='x64'", {
          "dependencies": [
            "geb_kernels_avx2",
            "geb_kernels_avx512",
            "geb_kernels_avx512vnni",
            "geb_kernels_avx512bf16",
          ],
        }],
        ["target_arch=='arm64'", {
          "dependencies": ["geb_kernels_neon", "geb_kernels_neondot"],
        }],
      ],
    },
  ],
  "conditions": [
    ["target_arch=='x64'", {
      # GCC 12's avx512fintrin.h fills the upper half of 256-to-512-bit casts from a
      # self-initialized variable, which -Wmaybe-uninitialized reports once inlined: a false
      # positive in the compiler's header, so the AVX-512 groups turn that warning off.
      "targets": [
        {
          "target_name": "geb_kernels_avx2",
          "type": "static_library",
          "sources": ["<!@(node scripts/list-sources.mjs avx2)"],
          "cflags": ["-mavx2", "-mfma", "-mf16c"],
          "xcode_settings": {"OTHER_CFLAGS": ["-mavx2", "-mfma", "-mf16c"]},
          "msvs_settings": {"VCCLCompilerTool": {"AdditionalOptions": ["/arch:AVX2"]}},
        },
        {
          "target_name": "geb_kernels_avx512",
          "type": "static_library",
          "sources": ["<!@(node scripts/list-sources.mjs avx512)"],
          "cflags": [
            "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mf16c",
            "-Wno-maybe-uninitialized",
          ],
          "xcode_settings": {
            "OTHER_CFLAGS": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mf16c"],
          },
          "msvs_settings": {"VCCLCompilerTool": {"AdditionalOptions": ["/arch:AVX512"]}},
        },
        {
          "target_name": "geb_kernels_avx512vnni",
          "type": "static_library",
          "sources": ["<!@(node scripts/list-sources.mjs avx512vnni)"],
          "cflags": [
            "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mf16c",
            "-mavx512vnni", "-Wno-maybe-uninitialized",
          ],
          "xcode_settings": {
            "OTHER_CFLAGS": [
              "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mf16c",
              "-mavx512vnni",
            ],
          },
          "msvs_settings": {"VCCLCompilerTool": {"AdditionalOptions": ["/arch:AVX512"]}},
        },
        {
          "target_name": "geb_kernels_avx512bf16",
          "type": "static_library",
          "sources": ["<!@(node scripts/list-sources.mjs avx512bf16)"],
          "cflags": [
            "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mf16c",
            "-mavx512vnni", "-mavx512bf16", "-Wno-maybe-uninitialized",
          ],
          "xcode_settings": {
            "OTHER_CFLAGS": [
              "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mf16c",
              "-mavx512vnni", "-mavx512bf16",
            ],
          },
          "msvs_settings": {"VCCLCompilerTool": {"AdditionalOptions": ["/arch:AVX512"]}},
        },
      ],
    }],
    ["target_arch=='arm64'", {
      "targets": [
        {
          "target_name": "geb_kernels_neon",
          "type": "static_library",
          "sources": ["<!@(node scripts/list-sources.mjs neon)"],
          "cflags": ["-march=armv8-a"],
          "xcode_settings": {"OTHER_CFLAGS": ["-march=armv8-a"]},
        },
        {
          # Only this group may use the Armv8.2-A dot-product extension: the plain Neon tier
          # must also run on cores without it, such as Cortex-A53.
          "target_name": "geb_kernels_neondot",
          "type": "static_library",
          "sources": ["<!@(node scripts/list-sources.mjs neondot)"],
          "cflags": ["-march=armv8.2-a+dotprod"],
          "xcode_settings": {"OTHER_CFLAGS": ["-march=armv8.2-a+dotprod"]},
        },
      ],
    }],
  ],
}

// SPDX-License-Identifier: MIT
// Reads a kernel tier name passed from JS and checks that this CPU can run it.
#pragma once

#include <napi.h>

#include <string>

#include "cpu/cpu.h"
#include "js_args.h"

namespace geb::binding {

// Throws ERR_GEB_INVALID_ARGUMENT for an unknown name and ERR_GEB_CPU_FEATURE for a tier this
// CPU cannot run.
inline cpu::Tier get_tier(Napi::Env env, Napi::Value value, const std::string& field) {
  const std::string name = get_string(env, value, field);
  const auto tier = cpu::parse_tier(name.c_str());
  if (!tier) {
    throw invalid_argument(env, field + " \"" + name + "\" is not a kernel tier; expected scalar, avx2, avx512, avx512vnni, neon or neondot");
  }
  if (!cpu::tier_supported(*tier)) {
    throw CodedError(env, kErrCpuFeature, field + " \"" + name + "\" needs instructions this CPU does not have; use one of kernelTiers()");
  }
  return *tier;
}

// Creates the `kernels` export: single-kernel entry points for tests and benchmarks.
Napi::Object CreateKernelsExport(Napi::Env env);

}  // namespace geb::binding

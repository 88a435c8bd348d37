// SPDX-License-Identifier: MIT
// Seams between addon.cpp (module init) and the files that add exports to the addon. Each
// Register* function adds its exports to `exports` for one Node.js environment: the main thread
// or a worker_thread. No JS value may be kept in a static; per-environment state lives in
// AddonData, reached through GetAddonData(env).
#pragma once

#include <napi.h>

#include <string>
#include <unordered_map>

namespace geb::binding {

// Error codes shared with lib/errors.ts (GebErrorCode). The JS layer turns a native error with
// one of these codes into the matching error class.
inline constexpr const char* kErrInvalidArgument = "ERR_GEB_INVALID_ARGUMENT";
inline constexpr const char* kErrModelFormat = "ERR_GEB_MODEL_FORMAT";
inline constexpr const char* kErrUnsupported = "ERR_GEB_UNSUPPORTED";
inline constexpr const char* kErrContextOverflow = "ERR_GEB_CONTEXT_OVERFLOW";
inline constexpr const char* kErrDisposed = "ERR_GEB_DISPOSED";
inline constexpr const char* kErrAborted = "ERR_GEB_ABORTED";
inline constexpr const char* kErrCpuFeature = "ERR_GEB_CPU_FEATURE";
inline constexpr const char* kErrIo = "ERR_GEB_IO";
inline constexpr const char* kErrInternal = "ERR_GEB_INTERNAL";

// State owned by one Node.js environment, deleted when that environment shuts down.
struct AddonData {
  // Class constructors registered by name (e.g. "Engine"), for code that creates instances
  // from C++ or checks `instanceof`.
  std::unordered_map<std::string, Napi::FunctionReference> constructors;
};

// Returns this environment's AddonData (created by the module init before any Register* call).
AddonData& GetAddonData(Napi::Env env);

// Returns an Error whose `code` property is set, ready to throw or to reject a promise with.
Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message);

}  // namespace geb::binding

// Adds version, cpuFeatures(), kernelTiers(), bestTier() and defaultThreads() (addon.cpp).
void RegisterCpu(Napi::Env env, Napi::Object exports);

// Adds the engine's exports (engine_binding.cpp, owned by the engine code).
void RegisterEngine(Napi::Env env, Napi::Object exports);

// Adds encodeWeights(), the weight re-encoder of convert-at-load and `geb-cpu convert` (convert_binding.cpp).
void RegisterConvert(Napi::Env env, Napi::Object exports);

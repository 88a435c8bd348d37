// SPDX-License-Identifier: MIT
// Module init of the geb_cpu addon and its CPU exports. The addon is a Node-API module, so it is
// context-aware: every environment (main thread or worker_thread) that loads it gets its own
// exports and its own AddonData, and no JS value is shared between them.
#include <string>

#include "cpu/cpu.h"
#include "binding/guard.h"
#include "register.h"

// The package version, passed by binding.gyp from package.json. Stringized from its tokens so
// the build needs no shell quoting.
#define GEB_STRINGIZE_TOKENS(x) #x
#define GEB_STRINGIZE(x) GEB_STRINGIZE_TOKENS(x)
#ifdef GEB_CPU_VERSION
#define GEB_CPU_VERSION_STRING GEB_STRINGIZE(GEB_CPU_VERSION)
#else
#define GEB_CPU_VERSION_STRING "unknown"
#endif

namespace geb::binding {

AddonData& GetAddonData(Napi::Env env) {
  AddonData* data = env.GetInstanceData<AddonData>();
  if (data == nullptr) {
    // Only reachable if a Register* function runs outside module init, which is a bug.
    throw CodedError(env, kErrInternal, "geb-cpu addon state is missing for this environment");
  }
  return *data;
}

Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

}  // namespace geb::binding

namespace {

const char* arch_name() {
#if defined(__x86_64__) || defined(_M_X64)
  return "x64";
#elif defined(__aarch64__) || defined(_M_ARM64)
  return "arm64";
#else
  return "other";
#endif
}

Napi::Value CpuFeatures(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const geb::cpu::Features f = geb::cpu::detect();
  Napi::Object out = Napi::Object::New(env);
  out.Set("arch", arch_name());
  out.Set("sse42", f.sse42);
  out.Set("avx", f.avx);
  out.Set("avx2", f.avx2);
  out.Set("fma", f.fma);
  out.Set("f16c", f.f16c);
  out.Set("avx512f", f.avx512f);
  out.Set("avx512bw", f.avx512bw);
  out.Set("avx512vl", f.avx512vl);
  out.Set("avx512dq", f.avx512dq);
  out.Set("avx512vnni", f.avx512vnni);
  out.Set("avx512bf16", f.avx512bf16);
  out.Set("osYmm", f.os_ymm);
  out.Set("osZmm", f.os_zmm);
  out.Set("neon", f.neon);
  out.Set("dotprod", f.dotprod);
  out.Set("fp16", f.fp16);
  return out;
}

Napi::Value KernelTiers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::vector<geb::cpu::Tier> tiers = geb::cpu::supported_tiers();
  Napi::Array out = Napi::Array::New(env, tiers.size());
  for (size_t i = 0; i < tiers.size(); ++i) {
    out.Set(static_cast<uint32_t>(i), geb::cpu::tier_name(tiers[i]));
  }
  return out;
}

Napi::Value BestTier(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), geb::cpu::tier_name(geb::cpu::best_tier()));
}

Napi::Value DefaultThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), geb::cpu::physical_core_count());
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // The environment owns the data and deletes it at teardown (default finalizer).
  env.SetInstanceData(new geb::binding::AddonData());
  RegisterCpu(env, exports);
  RegisterEngine(env, exports);
  RegisterConvert(env, exports);
  return exports;
}

}  // namespace

void RegisterCpu(Napi::Env env, Napi::Object exports) {
  exports.Set("version", Napi::String::New(env, GEB_CPU_VERSION_STRING));
  exports.Set("cpuFeatures", Napi::Function::New(env, geb::binding::Guarded<CpuFeatures>, "cpuFeatures"));
  exports.Set("kernelTiers", Napi::Function::New(env, geb::binding::Guarded<KernelTiers>, "kernelTiers"));
  exports.Set("bestTier", Napi::Function::New(env, geb::binding::Guarded<BestTier>, "bestTier"));
  exports.Set("defaultThreads", Napi::Function::New(env, geb::binding::Guarded<DefaultThreads>, "defaultThreads"));
}

NODE_API_MODULE(geb_cpu, Init)

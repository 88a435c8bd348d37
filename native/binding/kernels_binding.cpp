// SPDX-License-Identifier: MIT
// The `kernels` export: each kernel of the table callable from JS on a chosen tier, so tests can
// compare tiers and benchmarks can time one kernel. Every call copies its inputs and allocates its
// output; these entry points are not for the forward pass.
#include <cmath>
#include <cstring>
#include <new>
#include <vector>

#include "core/bandwidth.h"
#include "core/error.h"
#include "core/kernel_table.h"
#include "core/rope_tables.h"
#include "kernels/kernels.h"
#include "kernels/numeric.h"
#include "guard.h"
#include "tier_arg.h"

namespace geb::binding {
namespace {

const kernels::KernelTable& table_for(Napi::Env env, Napi::Value tier_value) {
  const cpu::Tier tier = get_tier(env, tier_value, "tier");
  try {
    return kernel_table(tier);
  } catch (const EngineError& e) {
    throw CodedError(env, kErrCpuFeature, e.what());
  }
}

Napi::Float32Array to_js(Napi::Env env, const std::vector<float>& values) {
  Napi::Float32Array out = Napi::Float32Array::New(env, values.size());
  if (!values.empty()) std::memcpy(out.Data(), values.data(), values.size() * sizeof(float));
  return out;
}

std::vector<float> to_vector(const Napi::Float32Array& a) { return std::vector<float>(a.Data(), a.Data() + a.ElementLength()); }

// matmul(type, w: Uint8Array, rows, k, x: Float32Array, nTokens, tier) -> Float32Array (nTokens, rows)
Napi::Value Matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string type_name = get_string(env, info[0], "type");
  kernels::WeightType type;
  if (type_name == "f32") type = kernels::WeightType::F32;
  else if (type_name == "f16") type = kernels::WeightType::F16;
  else if (type_name == "bf16") type = kernels::WeightType::BF16;
  else throw CodedError(env, kErrUnsupported, "matmul type \"" + type_name + "\" is not supported; expected f32, f16 or bf16");
  Napi::Uint8Array w = get_u8(env, info[1], "w");
  const int rows = get_int(env, info[2], "rows", 1);
  const int k = get_int(env, info[3], "k", 1);
  Napi::Float32Array x = get_f32(env, info[4], "x");
  const int n_tokens = get_int(env, info[5], "nTokens", 1);
  const kernels::KernelTable& kt = table_for(env, info[6]);

  const size_t stride = kernels::row_bytes(type, k);
  if (w.ByteLength() != stride * static_cast<size_t>(rows)) {
    throw invalid_argument(env, "w has " + std::to_string(w.ByteLength()) + " bytes, expected rows * k * element size = " +
                                    std::to_string(stride * static_cast<size_t>(rows)));
  }
  if (x.ElementLength() != static_cast<size_t>(n_tokens) * k) {
    throw invalid_argument(env, "x has " + std::to_string(x.ElementLength()) + " elements, expected nTokens * k = " +
                                    std::to_string(static_cast<size_t>(n_tokens) * k));
  }
  std::vector<float> y(static_cast<size_t>(n_tokens) * rows);
  const kernels::PreparedX px{x.Data(), static_cast<size_t>(k) * sizeof(float)};
  kt.matmul[static_cast<int>(type)](w.Data(), stride, px, k, n_tokens, 0, rows, y.data(), rows);
  return to_js(env, y);
}

// rmsnorm(x: Float32Array, w: Float32Array, eps, tier) -> Float32Array
Napi::Value Rmsnorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array x = get_f32(env, info[0], "x");
  Napi::Float32Array w = get_f32(env, info[1], "w");
  const double eps = get_number(env, info[2], "eps");
  const kernels::KernelTable& kt = table_for(env, info[3]);
  if (x.ElementLength() == 0 || w.ElementLength() != x.ElementLength()) {
    throw invalid_argument(env, "x and w must have the same non-zero length");
  }
  std::vector<float> y(x.ElementLength());
  kt.rmsnorm(x.Data(), w.Data(), static_cast<int>(x.ElementLength()), static_cast<float>(eps), y.data());
  return to_js(env, y);
}

// rope(x: Float32Array (nHeads * headDim), nHeads, headDim, ropeDim, pos, base, tier) -> Float32Array
Napi::Value Rope(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array x = get_f32(env, info[0], "x");
  const int n_heads = get_int(env, info[1], "nHeads", 1);
  const int head_dim = get_int(env, info[2], "headDim", 1);
  const int rope_dim = get_int(env, info[3], "ropeDim", 0, head_dim);
  const int pos = get_int(env, info[4], "pos", INT32_MIN, INT32_MAX);
  const double base = get_number(env, info[5], "base");
  const kernels::KernelTable& kt = table_for(env, info[6]);
  if (rope_dim % 2 != 0) throw invalid_argument(env, "ropeDim must be even, got " + std::to_string(rope_dim));
  if (x.ElementLength() != static_cast<size_t>(n_heads) * head_dim) throw invalid_argument(env, "x must have nHeads * headDim elements");
  std::vector<float> y = to_vector(x);
  std::vector<float> cos2(static_cast<size_t>(rope_dim)), sin2(static_cast<size_t>(rope_dim));
  fill_rope_tables(rope_theta(static_cast<float>(base), rope_dim), pos, cos2.data(), sin2.data());
  kt.rope(y.data(), n_heads, head_dim, rope_dim, cos2.data(), sin2.data());
  return to_js(env, y);
}

// attention(q (nGroup * headDim), k (nKeys * headDim), v (nKeys * headDim), nGroup, headDim,
//           nKeys, kvType: "f32" | "f16", tier) -> Float32Array (nGroup * headDim); scale 1/sqrt(headDim)
Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array q = get_f32(env, info[0], "q");
  Napi::Float32Array k = get_f32(env, info[1], "k");
  Napi::Float32Array v = get_f32(env, info[2], "v");
  const int n_group = get_int(env, info[3], "nGroup", 1);
  const int head_dim = get_int(env, info[4], "headDim", 1);
  const int n_keys = get_int(env, info[5], "nKeys", 1);
  const std::string kv_type = get_string(env, info[6], "kvType");
  const kernels::KernelTable& kt = table_for(env, info[7]);
  if (kv_type != "f32" && kv_type != "f16") throw invalid_argument(env, "kvType must be \"f32\" or \"f16\", got \"" + kv_type + "\"");
  if (q.ElementLength() != static_cast<size_t>(n_group) * head_dim) throw invalid_argument(env, "q must have nGroup * headDim elements");
  const size_t kv_elements = static_cast<size_t>(n_keys) * head_dim;
  if (k.ElementLength() != kv_elements || v.ElementLength() != kv_elements) {
    throw invalid_argument(env, "k and v must have nKeys * headDim elements");
  }

  std::vector<float> out(static_cast<size_t>(n_group) * head_dim);
  std::vector<float> scratch(kernels::attention_scratch_floats(n_group, head_dim));
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  if (kv_type == "f32") {
    kt.attention_f32kv(q.Data(), head_dim, n_group, head_dim, k.Data(), v.Data(), n_keys, scale, out.data(), head_dim, scratch.data());
  } else {
    std::vector<uint16_t> kh(kv_elements), vh(kv_elements);
    for (size_t i = 0; i < kv_elements; ++i) {
      kh[i] = kernels::float_to_half(k.Data()[i]);
      vh[i] = kernels::float_to_half(v.Data()[i]);
    }
    kt.attention_f16kv(q.Data(), head_dim, n_group, head_dim, kh.data(), vh.data(), n_keys, scale, out.data(), head_dim, scratch.data());
  }
  return to_js(env, out);
}

// swiglu(a: Float32Array, b: Float32Array, tier) -> Float32Array
Napi::Value Swiglu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array a = get_f32(env, info[0], "a");
  Napi::Float32Array b = get_f32(env, info[1], "b");
  const kernels::KernelTable& kt = table_for(env, info[2]);
  if (a.ElementLength() != b.ElementLength()) throw invalid_argument(env, "a and b must have the same length");
  std::vector<float> y(a.ElementLength());
  kt.swiglu(a.Data(), b.Data(), static_cast<int>(a.ElementLength()), y.data());
  return to_js(env, y);
}

// softmax(x: Float32Array, tier) -> Float32Array
Napi::Value Softmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array x = get_f32(env, info[0], "x");
  const kernels::KernelTable& kt = table_for(env, info[1]);
  std::vector<float> y = to_vector(x);
  kt.softmax(y.data(), static_cast<int>(y.size()));
  return to_js(env, y);
}

// readBandwidth(bytes, threads, passes, tier) -> { bytesPerSecond, bestMs, threads }
// Blocks the calling thread for the whole probe (about passes * bytes / bandwidth): for
// benchmarks, not for a server's main thread.
Napi::Value ReadBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t bytes = get_integer(env, info[0], "bytes", int64_t{1} << 20, int64_t{1} << 40);
  const int threads = get_int(env, info[1], "threads", 1, 1024);
  const int passes = get_int(env, info[2], "passes", 1, 1000);
  const kernels::KernelTable& kt = table_for(env, info[3]);
  BandwidthResult r;
  try {
    r = measure_read_bandwidth(kt, static_cast<size_t>(bytes), threads, passes);
  } catch (const std::bad_alloc&) {
    throw CodedError(env, kErrInvalidArgument, "could not allocate " + std::to_string(bytes) + " bytes for the bandwidth probe; pass a smaller size");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("bytesPerSecond", r.bytes_per_second);
  out.Set("bestMs", r.best_seconds * 1000.0);
  out.Set("threads", r.threads);
  return out;
}

}  // namespace

Napi::Object CreateKernelsExport(Napi::Env env) {
  Napi::Object k = Napi::Object::New(env);
  k.Set("matmul", Napi::Function::New(env, Guarded<Matmul>, "matmul"));
  k.Set("rmsnorm", Napi::Function::New(env, Guarded<Rmsnorm>, "rmsnorm"));
  k.Set("rope", Napi::Function::New(env, Guarded<Rope>, "rope"));
  k.Set("attention", Napi::Function::New(env, Guarded<Attention>, "attention"));
  k.Set("swiglu", Napi::Function::New(env, Guarded<Swiglu>, "swiglu"));
  k.Set("softmax", Napi::Function::New(env, Guarded<Softmax>, "softmax"));
  k.Set("readBandwidth", Napi::Function::New(env, Guarded<ReadBandwidth>, "readBandwidth"));
  return k;
}

}  // namespace geb::binding

// SPDX-License-Identifier: MIT
// The `encodeWeights` export: re-encodes a chunk of weight values (core/weight_encode.h) on a
// libuv worker thread, so convert-at-load and `geb-cpu convert` neither block the event loop nor
// wait for JS encoders. lib/formats/quantize.ts calls it and falls back to its JS encoders when
// the addon cannot be loaded.
#include <string>

#include "core/error.h"
#include "core/weight_encode.h"
#include "guard.h"
#include "js_args.h"
#include "register.h"

namespace geb::binding {
namespace {

kernels::WeightType weight_type(Napi::Env env, Napi::Value value, const char* field) {
  const std::string name = get_string(env, value, field);
  if (name == "f32") return kernels::WeightType::F32;
  if (name == "f16") return kernels::WeightType::F16;
  if (name == "bf16") return kernels::WeightType::BF16;
  if (name == "q8_0") return kernels::WeightType::Q8_0;
  if (name == "q4_0") return kernels::WeightType::Q4_0;
  throw invalid_argument(env, std::string(field) + " must be f32, f16, bf16, q8_0 or q4_0, not \"" + name + "\"");
}

// Runs encode_weights off the main thread. Holds references to both arrays so neither buffer is
// collected while Execute reads and writes them.
class EncodeWorker : public Napi::AsyncWorker {
 public:
  EncodeWorker(Napi::Env env, kernels::WeightType from, Napi::Uint8Array src, size_t n, kernels::WeightType to, Napi::Uint8Array dst)
      : Napi::AsyncWorker(env, "geb-cpu:encodeWeights"),
        deferred_(Napi::Promise::Deferred::New(env)),
        from_(from),
        to_(to),
        n_(n),
        src_data_(src.Data()),
        dst_data_(dst.Data()),
        src_(Napi::Persistent(static_cast<Napi::Object>(src))),
        dst_(Napi::Persistent(static_cast<Napi::Object>(dst))) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      encode_weights(from_, src_data_, n_, to_, dst_data_);
    } catch (const EngineError& e) {
      code_ = e.code();
      SetError(e.what());
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override { deferred_.Resolve(dst_.Value()); }

  void OnError(const Napi::Error& error) override {
    Napi::Error coded = CodedError(Env(), error_code_name(code_), error.Message());
    deferred_.Reject(coded.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  kernels::WeightType from_;
  kernels::WeightType to_;
  size_t n_;
  const uint8_t* src_data_;
  uint8_t* dst_data_;
  Napi::ObjectReference src_;
  Napi::ObjectReference dst_;
  ErrorCode code_ = ErrorCode::Internal;
};

// encodeWeights(from, src: Uint8Array, to, dst: Uint8Array) -> Promise<Uint8Array> (resolves to dst)
Napi::Value EncodeWeights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const kernels::WeightType from = weight_type(env, info[0], "from");
  Napi::Uint8Array src = get_u8(env, info[1], "src");
  const kernels::WeightType to = weight_type(env, info[2], "to");
  Napi::Uint8Array dst = get_u8(env, info[3], "dst");
  if (from == kernels::WeightType::Q8_0 || from == kernels::WeightType::Q4_0) {
    throw invalid_argument(env, "encodeWeights reads f32, f16 or bf16 values; decode quantized weights in JS");
  }
  const size_t element_bytes = kernels::row_bytes(from, 1);
  if (src.ByteLength() % element_bytes != 0) {
    throw invalid_argument(env, "src has " + std::to_string(src.ByteLength()) + " bytes, not a whole number of values");
  }
  const size_t n = src.ByteLength() / element_bytes;
  const bool quantized = to == kernels::WeightType::Q8_0 || to == kernels::WeightType::Q4_0;
  if (quantized && n % kernels::kQuantBlock != 0) {
    throw invalid_argument(env, "src has " + std::to_string(n) + " values; quantized output needs a multiple of 32");
  }
  const size_t needed = kernels::row_bytes(to, static_cast<int64_t>(n));
  if (dst.ByteLength() != needed) {
    throw invalid_argument(env, "dst has " + std::to_string(dst.ByteLength()) + " bytes, expected " + std::to_string(needed));
  }
  auto* worker = new EncodeWorker(env, from, src, n, to, dst);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace
}  // namespace geb::binding

void RegisterConvert(Napi::Env env, Napi::Object exports) {
  exports.Set("encodeWeights", Napi::Function::New(env, geb::binding::Guarded<geb::binding::EncodeWeights>, "encodeWeights"));
}

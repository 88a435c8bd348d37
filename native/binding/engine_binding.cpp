// SPDX-License-Identifier: MIT
// The `Engine` class of the addon: a geb::Engine behind Node-API. Arguments are copied into C++
// structs on the main thread. forward() then hands the step to the engine's own StepThread, which
// touches no JS value, drives the engine's thread pool and settles the promise through a
// threadsafe function. A persistent thread rather than an AsyncWorker per step saves the libuv
// thread pool's queue and wake-up on every decode step, which is most of a small model's step
// time. One forward step runs at a time per engine, so a second call while one runs is rejected,
// and so are the sequence operations.
#include <cmath>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/forward.h"
#include "guard.h"
#include "register.h"
#include "step_thread.h"
#include "tier_arg.h"

namespace geb::binding {
namespace {

Napi::Error coded_error(Napi::Env env, const EngineError& e) {
  return CodedError(env, error_code_name(e.code()), e.what());
}

kernels::WeightType parse_weight_type(Napi::Env env, const std::string& name, const std::string& field) {
  if (name == "f32") return kernels::WeightType::F32;
  if (name == "f16") return kernels::WeightType::F16;
  if (name == "bf16") return kernels::WeightType::BF16;
  if (name == "q8_0") return kernels::WeightType::Q8_0;
  if (name == "q4_0") return kernels::WeightType::Q4_0;
  throw CodedError(env, kErrUnsupported, field + " \"" + name + "\" is not a known tensor type");
}

// Copies the JS model plan (lib/model/plan.ts ModelPlan) into a PlanSpec.
PlanSpec read_plan(Napi::Env env, Napi::Value value) {
  PlanSpec plan;
  Napi::Object obj = get_object(env, value, "plan");
  Napi::Object hp = get_object(env, obj.Get("hparams"), "plan.hparams");
  const std::string arch = get_string(env, hp.Get("arch"), "plan.hparams.arch");
  if (arch == "llama") plan.hparams.arch = Architecture::Llama;
  else if (arch == "geb") plan.hparams.arch = Architecture::Geb;
  else throw CodedError(env, kErrUnsupported, "architecture \"" + arch + "\" is not supported; expected llama or geb");
  Hparams& h = plan.hparams;
  h.n_layer = get_int(env, hp.Get("nLayer"), "plan.hparams.nLayer", 1);
  h.n_embd = get_int(env, hp.Get("nEmbd"), "plan.hparams.nEmbd", 1);
  h.n_head = get_int(env, hp.Get("nHead"), "plan.hparams.nHead", 1);
  h.n_head_kv = get_int(env, hp.Get("nHeadKv"), "plan.hparams.nHeadKv", 1);
  h.head_dim = get_int(env, hp.Get("headDim"), "plan.hparams.headDim", 1);
  h.n_ff = get_int(env, hp.Get("nFf"), "plan.hparams.nFf", 1);
  h.n_vocab = get_int(env, hp.Get("nVocab"), "plan.hparams.nVocab", 1);
  h.n_ctx_train = get_int(env, hp.Get("nCtxTrain"), "plan.hparams.nCtxTrain", 1);
  h.rms_eps = static_cast<float>(get_number(env, hp.Get("rmsEps"), "plan.hparams.rmsEps"));
  h.rope_base = static_cast<float>(get_number(env, hp.Get("ropeBase"), "plan.hparams.ropeBase"));
  // finite as doubles, but the engine keeps them as float32, where 1e300 becomes infinity
  if (!std::isfinite(h.rms_eps)) throw invalid_argument(env, "plan.hparams.rmsEps does not fit a 32-bit float");
  if (!std::isfinite(h.rope_base)) throw invalid_argument(env, "plan.hparams.ropeBase does not fit a 32-bit float");
  h.rope_dim = get_int(env, hp.Get("ropeDim"), "plan.hparams.ropeDim", 0);

  Napi::Array files = get_array(env, obj.Get("files"), "plan.files");
  for (uint32_t i = 0; i < files.Length(); ++i) {
    plan.files.push_back(get_string(env, files.Get(i), "plan.files[" + std::to_string(i) + "]"));
  }

  Napi::Array tensors = get_array(env, obj.Get("tensors"), "plan.tensors");
  constexpr int64_t kMaxSafeInteger = 9007199254740991;  // 2^53 - 1, the largest exact JS integer
  for (uint32_t i = 0; i < tensors.Length(); ++i) {
    const std::string field = "plan.tensors[" + std::to_string(i) + "]";
    Napi::Object t = get_object(env, tensors.Get(i), field);
    TensorSpec spec;
    spec.name = get_string(env, t.Get("name"), field + ".name");
    spec.file = get_int(env, t.Get("file"), field + ".file", 0);
    spec.offset = static_cast<uint64_t>(get_integer(env, t.Get("offset"), field + ".offset", 0, kMaxSafeInteger));
    spec.nbytes = static_cast<uint64_t>(get_integer(env, t.Get("nbytes"), field + ".nbytes", 0, kMaxSafeInteger));
    spec.type = parse_weight_type(env, get_string(env, t.Get("type"), field + ".type"), field + ".type");
    Napi::Array shape = get_array(env, t.Get("shape"), field + ".shape");
    if (shape.Length() < 1 || shape.Length() > 2) throw invalid_argument(env, field + ".shape must have 1 or 2 dimensions");
    for (uint32_t d = 0; d < shape.Length(); ++d) {
      spec.shape.push_back(get_integer(env, shape.Get(d), field + ".shape[" + std::to_string(d) + "]", 1, INT32_MAX));
    }
    plan.tensors.push_back(std::move(spec));
  }
  return plan;
}

// Returns true for a SharedArrayBuffer. Node 20's Node-API has no napi_is_sharedarraybuffer, so
// the check is: not a plain ArrayBuffer (napi_is_arraybuffer), and instanceof SharedArrayBuffer.
bool is_shared_array_buffer(Napi::Env env, Napi::Value buffer) {
  if (!buffer.IsObject() || buffer.IsArrayBuffer()) return false;
  Napi::Value ctor = env.Global().Get("SharedArrayBuffer");
  if (!ctor.IsFunction()) return false;
  return buffer.As<Napi::Object>().InstanceOf(ctor.As<Napi::Function>());
}

EngineOptions read_options(Napi::Env env, Napi::Value value) {
  EngineOptions options;
  Napi::Object obj = get_object(env, value, "options");
  options.threads = get_int(env, obj.Get("threads"), "options.threads", 1, 1024);
  options.tier = get_tier(env, obj.Get("tier"), "options.tier");
  const std::string kv = get_string(env, obj.Get("kvType"), "options.kvType");
  if (kv == "f32") options.kv_type = KvType::F32;
  else if (kv == "f16") options.kv_type = KvType::F16;
  else throw invalid_argument(env, "options.kvType must be \"f32\" or \"f16\", got \"" + kv + "\"");
  Napi::Value ctx = obj.Get("contextSize");
  options.context_size = ctx.IsUndefined() ? 0 : get_int(env, ctx, "options.contextSize", 1);
  options.n_seq_max = get_int(env, obj.Get("nSeqMax"), "options.nSeqMax", 1, 4096);
  return options;
}

class EngineWrap;

// One forward step in flight: its inputs, the array the logits go to, and the outcome. Made on
// the main thread by forward(), run on the engine's StepThread, settled back on the main thread.
struct StepJob {
  EngineWrap* owner = nullptr;
  Napi::Promise::Deferred deferred;
  std::vector<BatchEntry> batch;
  Napi::ObjectReference abort_array;  // keeps the flag's SharedArrayBuffer alive
  const int32_t* abort_flag = nullptr;
  // The step writes the logits straight into this array, which no JS code can reach (so none
  // can detach its buffer) until the promise resolves with it.
  Napi::Reference<Napi::Float32Array> logits_array;
  float* logits = nullptr;
  size_t logits_floats = 0;
  bool failed = false;
  ErrorCode error_code = ErrorCode::Internal;
  std::string error_message;

  explicit StepJob(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

void RunStep(void* job);
void SettleStep(Napi::Env env, Napi::Function callback, void* context, StepJob* job);

// Carries a finished StepJob from the StepThread to the main thread.
using SettleFunction = Napi::TypedThreadSafeFunction<void, StepJob, SettleStep>;

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Engine",
                       {
                           InstanceMethod<&EngineWrap::Guarded<&EngineWrap::Forward>>("forward"),
                           InstanceMethod<&EngineWrap::Guarded<&EngineWrap::ClearSequence>>("clearSequence"),
                           InstanceMethod<&EngineWrap::Guarded<&EngineWrap::TruncateSequence>>("truncateSequence"),
                           InstanceMethod<&EngineWrap::Guarded<&EngineWrap::ShiftSequence>>("shiftSequence"),
                           InstanceMethod<&EngineWrap::Guarded<&EngineWrap::SequenceLength>>("sequenceLength"),
                           InstanceMethod<&EngineWrap::Guarded<&EngineWrap::Info>>("info"),
                           InstanceMethod<&EngineWrap::Guarded<&EngineWrap::Dispose>>("dispose"),
                       });
  }

  // new Engine(plan, { threads, tier, kvType, contextSize?, nSeqMax })
  explicit EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
    Napi::Env env = info.Env();
    guard(env, [&] {
      const PlanSpec plan = read_plan(env, info[0]);
      const EngineOptions options = read_options(env, info[1]);
      try {
        engine_ = std::make_unique<geb::Engine>(plan, options);
        step_thread_ = std::make_unique<StepThread>(RunStep);
      } catch (const std::bad_alloc&) {
        throw CodedError(env, kErrIo, "out of memory while creating the engine; lower contextSize or nSeqMax");
      } catch (const std::system_error& e) {
        throw CodedError(env, kErrIo, std::string("cannot start the engine's threads (") + e.what() + "); use fewer threads");
      }
      // Unreferenced while idle, so an idle engine does not keep the process alive; forward()
      // references it until its step settles.
      settle_ = SettleFunction::New(env, "geb-cpu:forward", 0, 1);
      settle_.Unref(env);
      // Added after the threadsafe function, so it runs before that function's own cleanup when
      // the environment shuts down (hooks run in reverse order): the step thread is joined
      // before the function it calls is freed.
      if (napi_add_env_cleanup_hook(env, &EngineWrap::OnEnvCleanup, this) == napi_ok) cleanup_hook_ = true;
    });
  }

  ~EngineWrap() override {
    if (cleanup_hook_) napi_remove_env_cleanup_hook(Env(), &EngineWrap::OnEnvCleanup, this);
    StopStepThread();
  }

  geb::Engine& engine() { return *engine_; }
  SettleFunction& settle() { return settle_; }

  // Called on the main thread when a forward step has settled.
  void StepDone() {
    busy_ = false;
    if (static_cast<napi_threadsafe_function>(settle_) != nullptr) settle_.Unref(Env());
    if (disposed_ && engine_) ReleaseEngine();
  }

 private:
  // An instance method wrapped in guard(), so no C++ exception leaves it uncoded.
  template <Napi::Value (EngineWrap::*Method)(const Napi::CallbackInfo&)>
  Napi::Value Guarded(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&] { return (this->*Method)(info); });
  }

  void ThrowIfUnusable(Napi::Env env, const char* method) {
    if (disposed_) throw CodedError(env, kErrDisposed, std::string("Engine.") + method + "() was called after dispose()");
    if (busy_) {
      throw invalid_argument(env, std::string("Engine.") + method + "() was called while a forward step is running; await it first");
    }
  }

  // Joins the step thread (after the step it runs, if any), then releases the threadsafe
  // function, which nothing calls any more. Idempotent.
  void StopStepThread() {
    if (step_thread_) step_thread_->stop();
    step_thread_.reset();
    if (static_cast<napi_threadsafe_function>(settle_) != nullptr) {
      settle_.Release();
      settle_ = SettleFunction();
    }
  }

  static void OnEnvCleanup(void* data) {
    auto* self = static_cast<EngineWrap*>(data);
    self->cleanup_hook_ = false;
    self->StopStepThread();
  }

  void ReleaseEngine() {
    StopStepThread();
    engine_.reset();
    for (Napi::Promise::Deferred& d : dispose_waiters_) d.Resolve(Env().Undefined());
    dispose_waiters_.clear();
  }

  // forward(seqIds: Int32Array, positions: Int32Array, tokens: Int32Array, wantsLogits: Uint8Array,
  //         abortFlag?: Int32Array) -> Promise<Float32Array>
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ThrowIfUnusable(env, "forward");
    Napi::Int32Array seq_ids = get_i32(env, info[0], "seqIds");
    Napi::Int32Array positions = get_i32(env, info[1], "positions");
    Napi::Int32Array tokens = get_i32(env, info[2], "tokens");
    Napi::Uint8Array wants = get_u8(env, info[3], "wantsLogits");
    const size_t n = seq_ids.ElementLength();
    if (positions.ElementLength() != n || tokens.ElementLength() != n || wants.ElementLength() != n) {
      throw invalid_argument(env, "seqIds, positions, tokens and wantsLogits must have the same length");
    }
    const int32_t* abort_flag = nullptr;
    Napi::Value abort_array = env.Undefined();
    if (info.Length() > 4 && !info[4].IsUndefined() && !info[4].IsNull()) {
      Napi::Int32Array flag = get_i32(env, info[4], "abortFlag");
      // The worker thread reads the flag during the whole step. A plain ArrayBuffer can be
      // detached (transferred) or shrunk (resizable) meanwhile, so the thread would read freed
      // memory. A SharedArrayBuffer can be neither detached nor shrunk.
      if (!is_shared_array_buffer(env, flag.ArrayBuffer())) {
        throw invalid_argument(env, "abortFlag must be an Int32Array over a SharedArrayBuffer");
      }
      if (flag.ElementLength() < 1) throw invalid_argument(env, "abortFlag must have at least one element");
      abort_flag = flag.Data();
      abort_array = flag;
    }

    auto job = std::make_unique<StepJob>(env);
    job->owner = this;
    job->batch.resize(n);
    for (size_t i = 0; i < n; ++i) {
      job->batch[i] = BatchEntry{seq_ids[i], positions[i], tokens[i], wants[i] != 0};
    }
    if (abort_flag != nullptr) {
      job->abort_array = Napi::Persistent(abort_array.As<Napi::Object>());
      job->abort_flag = abort_flag;
    }
    // allocated here, on the main thread, so the step thread writes the result in place
    // NOTE: each step allocates a fresh array (about 260 KB for GEB-1.3B's vocabulary), because a
    // caller may keep the previous step's logits.
    job->logits_floats = engine_->logits_floats(job->batch);
    Napi::Float32Array logits;
    try {
      logits = Napi::Float32Array::New(env, job->logits_floats);
    } catch (const Napi::Error&) {
      throw CodedError(env, kErrIo, "out of memory for " + std::to_string(job->logits_floats) +
                                        " floats of logits; ask for logits at fewer positions per step");
    }
    job->logits_array = Napi::Persistent(logits);
    job->logits = logits.Data();

    Napi::Promise promise = job->deferred.Promise();
    Ref();  // the JS Engine object stays alive while the step runs
    settle_.Ref(env);
    busy_ = true;
    step_thread_->post(job.release());
    return promise;
  }

  Napi::Value ClearSequence(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ThrowIfUnusable(env, "clearSequence");
    const int seq = get_int(env, info[0], "seqId");
    try {
      engine_->clear_sequence(seq);
    } catch (const EngineError& e) {
      throw coded_error(env, e);
    }
    return env.Undefined();
  }

  Napi::Value TruncateSequence(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ThrowIfUnusable(env, "truncateSequence");
    const int seq = get_int(env, info[0], "seqId");
    const int n_keep = get_int(env, info[1], "nKeep");
    try {
      engine_->truncate_sequence(seq, n_keep);
    } catch (const EngineError& e) {
      throw coded_error(env, e);
    }
    return env.Undefined();
  }

  Napi::Value ShiftSequence(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ThrowIfUnusable(env, "shiftSequence");
    const int seq = get_int(env, info[0], "seqId");
    const int n_keep = get_int(env, info[1], "nKeep");
    const int n_discard = get_int(env, info[2], "nDiscard");
    try {
      engine_->shift_sequence(seq, n_keep, n_discard);
    } catch (const EngineError& e) {
      throw coded_error(env, e);
    }
    return env.Undefined();
  }

  Napi::Value SequenceLength(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (disposed_) throw CodedError(env, kErrDisposed, "Engine.sequenceLength() was called after dispose()");
    const int seq = get_int(env, info[0], "seqId");
    try {
      return Napi::Number::New(env, engine_->sequence_length(seq));
    } catch (const EngineError& e) {
      throw coded_error(env, e);
    }
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (disposed_) throw CodedError(env, kErrDisposed, "Engine.info() was called after dispose()");
    const geb::Engine& e = *engine_;
    const Model& model = e.model();
    const Hparams& hp = model.hparams();
    Napi::Object out = Napi::Object::New(env);
    out.Set("arch", hp.arch == Architecture::Geb ? "geb" : "llama");
    out.Set("tier", cpu::tier_name(e.tier()));
    out.Set("threads", e.threads());
    out.Set("kvType", e.kv_cache().type() == KvType::F32 ? "f32" : "f16");
    out.Set("contextSize", e.context_size());
    out.Set("nSeqMax", e.n_seq_max());
    out.Set("nVocab", hp.n_vocab);
    out.Set("kvCacheBytes", static_cast<double>(e.kv_cache().bytes()));
    out.Set("scratchBytes", static_cast<double>(e.scratch_bytes()));
    out.Set("mappedBytes", static_cast<double>(model.mapped_bytes()));
    out.Set("repackedBytes", static_cast<double>(e.repacked_bytes()));
    out.Set("outputTied", model.output_tied());

    Napi::Array tensors = Napi::Array::New(env, model.tensors().size());
    for (size_t i = 0; i < model.tensors().size(); ++i) {
      const TensorInfo& t = model.tensors()[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", t.name);
      o.Set("type", weight_type_name(t.type));
      Napi::Array shape = Napi::Array::New(env, t.shape.size());
      for (size_t d = 0; d < t.shape.size(); ++d) shape.Set(static_cast<uint32_t>(d), static_cast<double>(t.shape[d]));
      o.Set("shape", shape);
      tensors.Set(static_cast<uint32_t>(i), o);
    }
    out.Set("tensors", tensors);

    Napi::Array conversions = Napi::Array::New(env, model.conversions().size());
    for (size_t i = 0; i < model.conversions().size(); ++i) conversions.Set(static_cast<uint32_t>(i), model.conversions()[i]);
    out.Set("conversions", conversions);
    return out;
  }

  // dispose() -> Promise<void>: resolves once no step runs and the model is unmapped.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
    disposed_ = true;
    if (!engine_) {
      deferred.Resolve(env.Undefined());
    } else if (busy_) {
      dispose_waiters_.push_back(deferred);
    } else {
      dispose_waiters_.push_back(deferred);
      ReleaseEngine();
    }
    return deferred.Promise();
  }

  std::unique_ptr<geb::Engine> engine_;
  std::unique_ptr<StepThread> step_thread_;  // runs the forward steps; null once stopped
  SettleFunction settle_;                    // settles each step's promise on the main thread
  bool cleanup_hook_ = false;                // OnEnvCleanup is registered and has not run
  bool busy_ = false;      // a forward step is queued or running (main thread only)
  bool disposed_ = false;  // dispose() was called (main thread only)
  std::vector<Napi::Promise::Deferred> dispose_waiters_;
};

// Runs on the step thread and touches no JS value.
void RunStep(void* data) {
  auto* job = static_cast<StepJob*>(data);
  try {
    // A mapped file truncated since load would fault with SIGBUS, one rewritten would give wrong
    // logits; both fail the step here instead.
    geb::Engine& engine = job->owner->engine();
    engine.model().check_files_unchanged();
    engine.forward(job->batch, job->abort_flag, job->logits, job->logits_floats);
  } catch (const EngineError& e) {
    job->failed = true;
    job->error_code = e.code();
    job->error_message = e.what();
  } catch (const std::bad_alloc&) {
    job->failed = true;
    job->error_code = ErrorCode::Io;
    job->error_message = "out of memory during the forward step";
  } catch (const std::exception& e) {
    job->failed = true;
    job->error_code = ErrorCode::Internal;
    job->error_message = std::string("internal error in the forward step: ") + e.what();
  }
  if (job->owner->settle().NonBlockingCall(job) != napi_ok) {
    // The environment is shutting down, so no one waits for this promise. Its references belong
    // to that environment and must not be deleted from this thread.
    job->abort_array.SuppressDestruct();
    job->logits_array.SuppressDestruct();
    delete job;
  }
}

// Runs on the main thread. `env` is null when the environment shuts down with the job still
// queued: then only the job's memory is freed. An exception thrown here while the environment
// shuts down (worker.terminate() during a step) would end the whole process, so none leaves.
// StepDone() runs before the promise settles, so a pending dispose() still releases the engine.
void SettleStep(Napi::Env env, Napi::Function, void*, StepJob* job) {
  std::unique_ptr<StepJob> owned(job);
  if (env == nullptr) {
    job->abort_array.SuppressDestruct();
    job->logits_array.SuppressDestruct();
    return;
  }
  EngineWrap* owner = job->owner;
  owner->StepDone();
  try {
    Napi::HandleScope scope(env);
    if (!job->failed) {
      job->deferred.Resolve(job->logits_array.Value());
    } else {
      job->deferred.Reject(CodedError(env, error_code_name(job->error_code), job->error_message).Value());
    }
  } catch (const Napi::Error&) {
    // The environment is shutting down or out of memory, so no caller can receive the result.
    try {
      job->deferred.Reject(CodedError(env, kErrIo, "could not return the logits of the forward step").Value());
    } catch (const Napi::Error&) {
    }
  }
  owner->Unref();
}

}  // namespace
}  // namespace geb::binding

void RegisterEngine(Napi::Env env, Napi::Object exports) {
  geb::binding::AddonData& data = geb::binding::GetAddonData(env);
  Napi::Function ctor = geb::binding::EngineWrap::Define(env);
  data.constructors["Engine"] = Napi::Persistent(ctor);
  exports.Set("Engine", ctor);
  exports.Set("kernels", geb::binding::CreateKernelsExport(env));
}

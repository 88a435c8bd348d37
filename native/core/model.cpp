// Model construction: validation of the hyperparameters, lookup of every tensor the forward pass
// needs, shape and byte-range checks before any pointer into a mapping is formed.
#include "model.h"

#include <cstring>
#include <unordered_map>

#include "error.h"
#include "kernels/numeric.h"

namespace geb {

const char* weight_type_name(kernels::WeightType type) {
  switch (type) {
    case kernels::WeightType::F32: return "f32";
    case kernels::WeightType::F16: return "f16";
    case kernels::WeightType::BF16: return "bf16";
    case kernels::WeightType::Q8_0: return "q8_0";
    case kernels::WeightType::Q4_0: return "q4_0";
  }
  return "unknown";
}

namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void check_hparams(const Hparams& hp) {
  auto require = [](bool ok, const std::string& message) {
    if (!ok) throw EngineError(ErrorCode::ModelFormat, "invalid model hyperparameters: " + message);
  };
  require(hp.n_layer > 0, "nLayer must be positive, got " + std::to_string(hp.n_layer));
  require(hp.n_embd > 0, "nEmbd must be positive, got " + std::to_string(hp.n_embd));
  require(hp.n_head > 0, "nHead must be positive, got " + std::to_string(hp.n_head));
  require(hp.n_head_kv > 0 && hp.n_head % hp.n_head_kv == 0,
          "nHeadKv must divide nHead, got nHead=" + std::to_string(hp.n_head) + " nHeadKv=" + std::to_string(hp.n_head_kv));
  require(hp.head_dim > 0, "headDim must be positive, got " + std::to_string(hp.head_dim));
  require(hp.n_ff > 0, "nFf must be positive, got " + std::to_string(hp.n_ff));
  require(hp.n_vocab > 0, "nVocab must be positive, got " + std::to_string(hp.n_vocab));
  require(hp.n_ctx_train > 0, "nCtxTrain must be positive, got " + std::to_string(hp.n_ctx_train));
  require(hp.rope_dim >= 0 && hp.rope_dim <= hp.head_dim && hp.rope_dim % 2 == 0,
          "ropeDim must be even and at most headDim=" + std::to_string(hp.head_dim) + ", got " + std::to_string(hp.rope_dim));
  require(hp.rms_eps > 0.0f, "rmsEps must be positive");
  require(hp.rope_base > 0.0f, "ropeBase must be positive");
}

}  // namespace

Model::Model(const PlanSpec& plan) : hparams_(plan.hparams) {
  const Hparams& hp = hparams_;
  check_hparams(hp);

  files_.reserve(plan.files.size());
  for (const std::string& path : plan.files) files_.emplace_back(path);

  std::unordered_map<std::string, const TensorSpec*> by_name;
  for (const TensorSpec& t : plan.tensors) {
    if (!by_name.emplace(t.name, &t).second) {
      throw EngineError(ErrorCode::ModelFormat, "tensor " + t.name + " appears twice in the model plan");
    }
    tensors_.push_back({t.name, t.type, t.shape});
  }

  // Returns the checked bytes of a tensor with the expected shape.
  auto find = [&](const std::string& name, const std::vector<int64_t>& shape) -> const TensorSpec& {
    auto it = by_name.find(name);
    if (it == by_name.end()) throw EngineError(ErrorCode::ModelFormat, "model plan has no tensor " + name);
    const TensorSpec& t = *it->second;
    if (t.shape != shape) {
      throw EngineError(ErrorCode::ModelFormat, "tensor " + name + " has shape " + shape_string(t.shape) +
                                                    ", expected " + shape_string(shape));
    }
    if (t.file < 0 || static_cast<size_t>(t.file) >= files_.size()) {
      throw EngineError(ErrorCode::ModelFormat, "tensor " + name + " points at file index " + std::to_string(t.file) +
                                                    ", but the plan lists " + std::to_string(files_.size()) + " files");
    }
    const int64_t cols = shape.back();
    const int64_t rows = shape.size() == 2 ? shape[0] : 1;
    if ((t.type == kernels::WeightType::Q8_0 || t.type == kernels::WeightType::Q4_0) && cols % kernels::kQuantBlock != 0) {
      throw EngineError(ErrorCode::ModelFormat, "tensor " + name + " has row length " + std::to_string(cols) +
                                                    ", which is not a multiple of the 32-element quantization block");
    }
    const uint64_t expected = static_cast<uint64_t>(rows) * kernels::row_bytes(t.type, cols);
    if (t.nbytes != expected) {
      throw EngineError(ErrorCode::ModelFormat, "tensor " + name + " has " + std::to_string(t.nbytes) + " bytes, expected " +
                                                    std::to_string(expected) + " for " + weight_type_name(t.type) + " " +
                                                    shape_string(shape));
    }
    const MappedFile& file = files_[static_cast<size_t>(t.file)];
    if (t.offset > file.size() || t.nbytes > file.size() - t.offset) {
      throw EngineError(ErrorCode::ModelFormat, "tensor " + name + " spans bytes [" + std::to_string(t.offset) + ", " +
                                                    std::to_string(t.offset + t.nbytes) + ") but " + file.path() + " has only " +
                                                    std::to_string(file.size()) + " bytes; the file is truncated or the plan is wrong");
    }
    return t;
  };

  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    const TensorSpec& t = find(name, {rows, cols});
    Matrix m;
    m.data = files_[static_cast<size_t>(t.file)].data() + t.offset;
    m.type = t.type;
    m.rows = rows;
    m.cols = cols;
    m.row_stride = kernels::row_bytes(t.type, cols);
    m.file = t.file;
    m.file_offset = t.offset;
    return m;
  };

  auto vector = [&](const std::string& name, int64_t n) {
    const TensorSpec& t = find(name, {n});
    const uint8_t* bytes = files_[static_cast<size_t>(t.file)].data() + t.offset;
    std::vector<float> out(static_cast<size_t>(n));
    switch (t.type) {
      case kernels::WeightType::F32:
        std::memcpy(out.data(), bytes, static_cast<size_t>(n) * 4);
        break;
      case kernels::WeightType::F16:
      case kernels::WeightType::BF16:
        for (int64_t i = 0; i < n; ++i) {
          uint16_t h;
          std::memcpy(&h, bytes + i * 2, 2);
          out[static_cast<size_t>(i)] = t.type == kernels::WeightType::F16 ? kernels::half_to_float(h) : kernels::bf16_to_float(h);
        }
        conversions_.push_back(name + ": " + weight_type_name(t.type) + " -> f32");
        break;
      default:
        throw EngineError(ErrorCode::Unsupported, "norm weight " + name + " has type " + weight_type_name(t.type) +
                                                      "; norm weights must be f32, f16 or bf16");
    }
    return out;
  };

  const int64_t q_dim = static_cast<int64_t>(hp.n_head) * hp.head_dim;
  const int64_t kv_dim = static_cast<int64_t>(hp.n_head_kv) * hp.head_dim;
  {
    const TensorSpec& t = find("token_embd", {hp.n_vocab, hp.n_embd});
    token_embd_.data = files_[static_cast<size_t>(t.file)].data() + t.offset;
    token_embd_.type = t.type;
    token_embd_.rows = hp.n_vocab;
    token_embd_.cols = hp.n_embd;
    token_embd_.row_stride = kernels::row_bytes(t.type, hp.n_embd);
  }

  layers_.resize(static_cast<size_t>(hp.n_layer));
  for (int i = 0; i < hp.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    Layer& l = layers_[static_cast<size_t>(i)];
    l.attn_norm = vector(p + "attn_norm", hp.n_embd);
    l.attn_q = matrix(p + "attn_q", q_dim, hp.n_embd);
    l.attn_k = matrix(p + "attn_k", kv_dim, hp.n_embd);
    l.attn_v = matrix(p + "attn_v", kv_dim, hp.n_embd);
    l.attn_output = matrix(p + "attn_output", hp.n_embd, q_dim);
    l.ffn_norm = vector(p + "ffn_norm", hp.n_embd);
    l.ffn_gate = matrix(p + "ffn_gate", hp.n_ff, hp.n_embd);
    l.ffn_up = matrix(p + "ffn_up", hp.n_ff, hp.n_embd);
    l.ffn_down = matrix(p + "ffn_down", hp.n_embd, hp.n_ff);
  }
  output_norm_ = vector("output_norm", hp.n_embd);

  if (by_name.count("output") != 0) {
    output_ = matrix("output", hp.n_vocab, hp.n_embd);
  } else {
    output_ = matrix("token_embd", hp.n_vocab, hp.n_embd);
    output_tied_ = true;
  }
}

void Model::check_files_unchanged() const {
  for (const MappedFile& f : files_) f.check_unchanged();
}

std::vector<Matrix*> Model::matmul_weights() {
  std::vector<Matrix*> out;
  for (Layer& l : layers_) {
    for (Matrix* m : {&l.attn_q, &l.attn_k, &l.attn_v, &l.attn_output, &l.ffn_gate, &l.ffn_up, &l.ffn_down}) out.push_back(m);
  }
  out.push_back(&output_);
  return out;
}

void Model::release_file_bytes(const Matrix& m) const {
  if (m.file < 0) return;
  files_[static_cast<size_t>(m.file)].release(m.file_offset, static_cast<uint64_t>(m.rows) * m.row_stride);
}

uint64_t Model::mapped_bytes() const {
  uint64_t total = 0;
  for (const MappedFile& f : files_) total += f.size();
  return total;
}

}  // namespace geb

// The model plan in C++ form (copied from the JS plan object by the binding) and the model built
// from it: the mapped files and a typed view of every weight, checked against the file sizes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "mapped_file.h"

namespace geb {

enum class Architecture { Llama, Geb };

// Hyperparameters, as in `ModelHparams` of lib/model/plan.ts.
struct Hparams {
  Architecture arch = Architecture::Llama;
  int n_layer = 0;
  int n_embd = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int n_ff = 0;
  int n_vocab = 0;
  int n_ctx_train = 0;
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
  int rope_dim = 0;
};

// One weight of the plan, as in `TensorRef`.
struct TensorSpec {
  std::string name;
  int file = 0;
  uint64_t offset = 0;
  uint64_t nbytes = 0;
  kernels::WeightType type = kernels::WeightType::F32;
  std::vector<int64_t> shape;  // PyTorch order: [rows, row length] or [length]
};

struct PlanSpec {
  Hparams hparams;
  std::vector<std::string> files;
  std::vector<TensorSpec> tensors;
};

// A row-major weight matrix: (rows, cols), row_stride bytes between rows. `data` points into a
// mapped file, or into the engine's repacked copy when `repacked_x8` is set (Q4_0 or Q8_0 in
// groups of 8 rows, kernels/quant.h; row_stride is then still the GGUF row size).
struct Matrix {
  const uint8_t* data = nullptr;
  kernels::WeightType type = kernels::WeightType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  size_t row_stride = 0;
  bool repacked_x8 = false;
  int file = -1;             // index of the mapped file that contains the original bytes
  uint64_t file_offset = 0;  // offset of the original bytes in that file
};

struct Layer {
  std::vector<float> attn_norm;  // (n_embd), widened to F32 at load
  Matrix attn_q;                 // (n_head * head_dim, n_embd)
  Matrix attn_k;                 // (n_head_kv * head_dim, n_embd)
  Matrix attn_v;                 // (n_head_kv * head_dim, n_embd)
  Matrix attn_output;            // (n_embd, n_head * head_dim)
  std::vector<float> ffn_norm;   // (n_embd), widened to F32 at load
  Matrix ffn_gate;               // (n_ff, n_embd)
  Matrix ffn_up;                 // (n_ff, n_embd)
  Matrix ffn_down;               // (n_embd, n_ff)
};

// Name, type and shape of one tensor, for Engine info().
struct TensorInfo {
  std::string name;
  kernels::WeightType type;
  std::vector<int64_t> shape;
};

class Model {
 public:
  // Maps the plan's files and builds the weight views. Throws EngineError: ModelFormat for a
  // missing tensor, a wrong shape or a byte range outside its file; Unsupported for a weight type
  // the engine cannot run; Io when a file cannot be mapped.
  explicit Model(const PlanSpec& plan);

  const Hparams& hparams() const { return hparams_; }
  const Matrix& token_embd() const { return token_embd_; }  // (n_vocab, n_embd)
  const std::vector<Layer>& layers() const { return layers_; }
  const std::vector<float>& output_norm() const { return output_norm_; }  // (n_embd)
  const Matrix& output() const { return output_; }  // (n_vocab, n_embd); token_embd when tied
  bool output_tied() const { return output_tied_; }
  // The matrices of the matmuls (every layer's projections, then the output), for repacking at load.
  std::vector<Matrix*> matmul_weights();
  // Drops the resident pages of a matrix's original bytes in its file (MappedFile::release).
  void release_file_bytes(const Matrix& m) const;
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // Conversions done at load, one line each, such as "blk.0.attn_norm: bf16 -> f32".
  const std::vector<std::string>& conversions() const { return conversions_; }
  uint64_t mapped_bytes() const;
  // Throws EngineError (ModelFormat) when a mapped file was truncated or rewritten since load
  // (MappedFile::check_unchanged). Called before each forward step.
  void check_files_unchanged() const;

 private:
  Hparams hparams_;
  std::vector<MappedFile> files_;
  Matrix token_embd_;
  std::vector<Layer> layers_;
  std::vector<float> output_norm_;
  Matrix output_;
  bool output_tied_ = false;
  std::vector<TensorInfo> tensors_;
  std::vector<std::string> conversions_;
};

const char* weight_type_name(kernels::WeightType type);

}  // namespace geb

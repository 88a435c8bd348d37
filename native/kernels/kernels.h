// Kernel table shared by the forward pass, the kernel tests and the JS `kernels` export: the
// function-pointer types, the layouts every kernel assumes, the quantized block formats, and
// one table per instruction-set tier. Each tier's table is filled once at startup; the forward
// pass never checks CPU features per call.
#pragma once

#include <cstddef>
#include <cstdint>

namespace geb::kernels {

// Weight storage types, in the order of `TensorType` in lib/model/plan.ts.
enum class WeightType : int { F32 = 0, F16 = 1, BF16 = 2, Q8_0 = 3, Q4_0 = 4 };
constexpr int kWeightTypeCount = 5;

// Elements per quantization block. Rows of quantized weights must be a multiple of it.
constexpr int kQuantBlock = 32;

// Q8_0: 32 weights as signed 8-bit integers sharing one scale. value = d * qs[i].
// 8.5 bits per weight. Same byte layout as GGUF's Q8_0.
struct block_q8_0 {
  uint16_t d;       // scale, IEEE half
  int8_t qs[32];    // quantized values, element order
};
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 must match the GGUF layout");

// Q4_0: 32 weights as 4-bit unsigned nibbles with an implicit offset of 8. value = d * (q - 8).
// Byte j stores element j in its low nibble and element j + 16 in its high nibble.
// 4.5 bits per weight. Same byte layout as GGUF's Q4_0.
struct block_q4_0 {
  uint16_t d;       // scale, IEEE half
  uint8_t qs[16];   // packed nibbles, see above
};
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 must match the GGUF layout");

// Bytes of one row of `k` weights of the given type (k must be a block multiple for quantized types).
size_t row_bytes(WeightType type, int64_t k);

// Activations after the per-weight-type "prepare" step. For F32, F16 and BF16 weights the
// activations stay F32 and `data` points at the caller's rows. For quantized weights `data`
// holds the activations re-quantized to 8-bit blocks (layout in quant.h) so the row kernel can
// use integer dot products.
struct PreparedX {
  const void* data;  // (n_tokens, row_bytes) row-major
  size_t row_bytes;  // distance between consecutive token rows, in bytes
};

// Converts `n_tokens` rows of `k` F32 activations (row-major, stride k) into `out`, which has room
// for at least n_tokens * prepared_row_bytes bytes. nullptr in a table means "use F32 as is".
using PrepareFn = void (*)(const float* x, int k, int n_tokens, void* out);

// Row-range matrix product: for r in [r0, r1) and t in [0, n_tokens),
//   y[t * ldy + r] = sum_i W[r][i] * x[t][i]
// W is row-major (rows, k) with `row_stride` bytes between rows (PyTorch [out, in] order, so this
// computes y = x W^T). Accumulation is in F32 whatever the weight type. Threads split the rows.
using MatmulFn = void (*)(const void* w, size_t row_stride, const PreparedX& x, int k,
                          int n_tokens, int r0, int r1, float* y, int ldy);

// Converts one row of `k` weights of the table's type to F32 (embedding lookup).
using DequantizeRowFn = void (*)(const void* w, int k, float* out);

// RMSNorm of one vector: y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]. x and y may alias.
using RmsnormFn = void (*)(const float* x, const float* w, int n, float eps, float* y);

// Rotary embedding in place on `n_heads` head vectors of `head_dim` floats (contiguous, stride
// head_dim). Only the first `rope_dim` dims of each head rotate, as adjacent pairs
// (d[2i], d[2i+1]):  d'[2i] = d[2i] c_i - d[2i+1] s_i,  d'[2i+1] = d[2i+1] c_i + d[2i] s_i.
// `cos2` and `sin2` have rope_dim entries with each pair's value stored twice: cos2[2i] =
// cos2[2i+1] = c_i, sin2[2i] = sin2[2i+1] = s_i.
using RopeFn = void (*)(float* x, int n_heads, int head_dim, int rope_dim, const float* cos2,
                        const float* sin2);

// Causal attention of one query token over one KV head, for the `n_group` query heads that share
// it (grouped-query attention). q is (n_group, head_dim) with stride q_stride floats. k and v are
// (n_keys, head_dim), contiguous, of the table's KV type (F32 or IEEE half). out is (n_group,
// head_dim) with stride out_stride. Each key and value row is read once for the whole group.
// scratch holds at least attention_scratch_floats(n_group, head_dim) floats.
using AttentionFn = void (*)(const float* q, int q_stride, int n_group, int head_dim,
                             const void* k, const void* v, int n_keys, float scale, float* out,
                             int out_stride, float* scratch);

// Keys processed per online-softmax block in the attention kernels.
constexpr int kAttentionBlock = 64;
constexpr size_t attention_scratch_floats(int n_group, int head_dim) {
  // scores (n_group, block) + running max, sum and rescale factor (3 * n_group)
  // + accumulators (n_group, head_dim)
  return static_cast<size_t>(n_group) * (kAttentionBlock + 3 + static_cast<size_t>(head_dim));
}

// SwiGLU: y[i] = silu(a[i]) * b[i] with silu(a) = a / (1 + exp(-a)). y may alias a or b.
using SwigluFn = void (*)(const float* a, const float* b, int n, float* y);

// Softmax in place over n floats (max-subtracted).
using SoftmaxFn = void (*)(float* x, int n);

// Reads `bytes` bytes at p (64-byte aligned, a multiple of 256 bytes) as fast as the tier can and
// returns a value that depends on every byte, so the compiler cannot drop a load. Only the memory
// bandwidth probe (native/core/bandwidth.h) calls it.
using ReadSumFn = uint64_t (*)(const void* p, size_t bytes);

// Kernels of one instruction-set tier. Entries that a tier does not implement hold the scalar
// kernel; `matmul` and `prepare` entries of unsupported weight types are nullptr.
struct KernelTable {
  const char* name;
  MatmulFn matmul[kWeightTypeCount];
  PrepareFn prepare[kWeightTypeCount];
  DequantizeRowFn dequantize_row[kWeightTypeCount];
  RmsnormFn rmsnorm;
  RopeFn rope;
  AttentionFn attention_f32kv;
  AttentionFn attention_f16kv;
  SwigluFn swiglu;
  SoftmaxFn softmax;
  ReadSumFn read_sum;
  // Matmuls over Q4_0 and Q8_0 weights repacked in groups of 8 rows (Q4_0x8, Q8_0x8 in quant.h),
  // nullptr where the tier has no kernel for that layout. The engine repacks a matrix at load
  // only when its type's entry is set.
  MatmulFn matmul_x8[kWeightTypeCount];
};

// Bytes of one prepared activation row of `k` values for weights of `type`: k * 4 for the float
// types, the int8 block layout of quant.h for Q8_0 and Q4_0. Size PreparedX buffers with it.
size_t prepared_row_bytes(WeightType type, int k);

// Per-family fillers, one per ISA translation unit. Each overwrites the entries it implements.
// The quantized matmul fillers (matmul_q8_0_<isa>.cpp, matmul_q4_0_<isa>.cpp) set both `matmul`
// and `prepare` of their type, so they run after fill_matmul_<isa>.
void fill_matmul_scalar(KernelTable& t);
void fill_norm_scalar(KernelTable& t);
void fill_rope_scalar(KernelTable& t);
void fill_attention_scalar(KernelTable& t);
void fill_activation_scalar(KernelTable& t);
void fill_memory_scalar(KernelTable& t);
void fill_matmul_q8_0_scalar(KernelTable& t);
void fill_matmul_q4_0_scalar(KernelTable& t);

#if defined(__x86_64__) || defined(_M_X64)
void fill_matmul_avx2(KernelTable& t);
void fill_norm_avx2(KernelTable& t);
void fill_rope_avx2(KernelTable& t);
void fill_attention_avx2(KernelTable& t);
void fill_activation_avx2(KernelTable& t);
void fill_memory_avx2(KernelTable& t);

void fill_matmul_avx512(KernelTable& t);
void fill_norm_avx512(KernelTable& t);
void fill_rope_avx512(KernelTable& t);
void fill_attention_avx512(KernelTable& t);
void fill_activation_avx512(KernelTable& t);

void fill_matmul_q8_0_avx2(KernelTable& t);
void fill_matmul_q4_0_avx2(KernelTable& t);
void fill_matmul_q8_0_avx512(KernelTable& t);
void fill_matmul_q4_0_avx512(KernelTable& t);
void fill_matmul_q8_0_avx512vnni(KernelTable& t);
void fill_matmul_q4_0_avx512vnni(KernelTable& t);
#endif

#if defined(__aarch64__)
void fill_matmul_neon(KernelTable& t);
void fill_norm_neon(KernelTable& t);
void fill_rope_neon(KernelTable& t);
void fill_attention_neon(KernelTable& t);
void fill_activation_neon(KernelTable& t);

// Plain NEON (Armv8-A) and dot-product (Armv8.2-A +dotprod) quantized matmuls.
void fill_matmul_q8_0_neon(KernelTable& t);
void fill_matmul_q4_0_neon(KernelTable& t);
void fill_matmul_q8_0_neondot(KernelTable& t);
void fill_matmul_q4_0_neondot(KernelTable& t);
#endif

}  // namespace geb::kernels

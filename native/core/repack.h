// Repacking of weights at load into a layout that the selected tier's kernels read faster: Q4_0
// and Q8_0 matrices become Q4_0x8 and Q8_0x8 (8 rows interleaved, kernels/quant.h) when the
// tier's table has a matmul_x8 kernel for the type. The copies live in one anonymous mapping, and the file pages of the originals are
// released, so the resident set holds each weight once.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/kernels.h"
#include "model.h"
#include "thread_pool.h"

namespace geb {

class RepackedWeights {
 public:
  // Repacks the model's eligible matrices on `pool` and points them at the copies. Leaves the
  // model unchanged when nothing is eligible. Throws EngineError (Internal) when the memory for
  // the copies cannot be mapped.
  RepackedWeights(Model& model, const kernels::KernelTable& table, ThreadPool& pool);
  ~RepackedWeights();
  RepackedWeights(const RepackedWeights&) = delete;
  RepackedWeights& operator=(const RepackedWeights&) = delete;

  // Bytes of the repacked copies (0 when nothing was repacked).
  uint64_t bytes() const { return size_; }
  // Number of matrices repacked.
  int matrices() const { return matrices_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  int matrices_ = 0;
};

}  // namespace geb

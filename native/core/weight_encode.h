// SPDX-License-Identifier: MIT
// Re-encoding of weight values between storage types, for convert-at-load and `geb-cpu convert`:
// F32, F16 or BF16 source values become F32, F16, BF16, Q8_0 or Q4_0. The output is bit for bit
// what lib/formats/tensor-encode.ts produces, so the JS encoders stay the reference and either
// path writes the same files. tests/convert-encoders.test.ts compares the two. Portable C++.
#pragma once

#include <cstddef>

#include "kernels/kernels.h"

namespace geb {

// Encodes `n` values stored as `from` (F32, F16 or BF16) at `src` as `to` into `dst`, which has
// room for kernels::row_bytes(to, n) bytes. For Q8_0 and Q4_0, n must be a multiple of 32.
// Throws EngineError (InvalidArgument) for a quantized `from` or a partial block.
void encode_weights(kernels::WeightType from, const void* src, size_t n, kernels::WeightType to, void* dst);

}  // namespace geb

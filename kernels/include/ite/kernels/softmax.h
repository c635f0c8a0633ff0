// Row softmax over fp32 scores or logits.
#pragma once

#include <cstdint>

#include "ite/kernels/kernel_types.h"

namespace ite::kernels {

// out[r, :] = softmax(x[r, :]). x, out [rows, n] fp32; out may alias x.
Status Softmax(const float* x, int32_t rows, int32_t n, float* out, cudaStream_t stream);

}  // namespace ite::kernels

// CPU reference operators of the vision tower (fp32): the ground truth for the CUDA kernels.
#pragma once

#include <cstdint>

#include "common/thread_pool.h"

namespace ite::cpu {

// out[r] = (x[r] - mean) / sqrt(var + eps) * w + b; out may alias x.
void LayerNorm(const float* x, const float* w, const float* b, int32_t rows, int32_t dim, float eps,
               float* out);
// x * Phi(x) with the erf (nn.GELU's default), in place.
void Gelu(float* x, int64_t n);
// x * sigmoid(1.702 x) (CLIP's quick_gelu), in place.
void QuickGelu(float* x, int64_t n);
// Attention of every row over every row (no mask): qkv [rows, 3 * heads * head_dim] (Q | K | V),
// out [rows, heads * head_dim], softmax(Q K^T / sqrt(head_dim)) V per head.
void DenseAttention(const float* qkv, int32_t rows, int32_t num_heads, int32_t head_dim, float* out,
                    ThreadPool* pool);

}  // namespace ite::cpu

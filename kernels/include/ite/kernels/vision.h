// Operators of the LLaVA vision tower: layernorm with bias, element-wise add, GELU / quick-GELU,
// fp32 upload conversion and non-causal attention over the rows of one image.
#pragma once

#include <cstdint>

#include "ite/kernels/kernel_types.h"

namespace ite::kernels {

struct LayerNormArgs {
  DType dtype = DType::kBF16;
  const void* x = nullptr;       // [rows, dim]
  const void* weight = nullptr;  // [dim]
  const void* bias = nullptr;    // [dim]
  void* out = nullptr;           // [rows, dim]; may alias x
  int32_t rows = 0;
  int32_t dim = 0;
  float eps = 1e-5f;
};

// out[r] = (x[r] - mean) / sqrt(var + eps) * weight + bias, fp32 statistics.
Status LayerNorm(const LayerNormArgs& args, cudaStream_t stream);

// x[i] += y[i] for i < n, in fp32, rounded to dtype.
Status AddInPlace(DType dtype, void* x, const void* y, int64_t n, cudaStream_t stream);

enum class GeluKind { kErf, kQuick };
// x = gelu(x) (erf form) or x * sigmoid(1.702 x), in place.
Status Gelu(DType dtype, GeluKind kind, void* x, int64_t n, cudaStream_t stream);

// out[i] = (dtype) src[i] for i < n; src is fp32 device memory.
Status ConvertFromF32(DType dtype, const float* src, void* out, int64_t n, cudaStream_t stream);

struct DenseAttentionArgs {
  DType dtype = DType::kBF16;
  const void* qkv = nullptr;  // [rows, 3 * num_heads * head_dim]: Q | K | V
  void* out = nullptr;        // [rows, num_heads * head_dim]
  int32_t rows = 0;           // at most kDenseAttentionMaxRows
  int32_t num_heads = 0;
  int32_t head_dim = 0;  // at most 256
  float scale = 1.0f;
};
inline constexpr int32_t kDenseAttentionMaxRows = 4096;

// softmax(Q K^T * scale) V per head over all rows (no mask): one image's patches.
Status DenseAttention(const DenseAttentionArgs& args, cudaStream_t stream);

}  // namespace ite::kernels

// RMSNorm and fused residual-add + RMSNorm over rows of activations.
#pragma once

#include <cstdint>

#include "ite/kernels/kernel_types.h"

namespace ite::kernels {

struct RmsNormArgs {
  DType dtype = DType::kBF16;
  const void* x = nullptr;       // [rows, dim]
  const void* weight = nullptr;  // [dim]
  void* out = nullptr;           // [rows, dim]; may alias x
  int32_t rows = 0;
  int32_t dim = 0;
  float eps = 1e-5f;
  // RmsNorm only: out row r normalises x row row_index[r] (device [rows]); null: row r.
  const int32_t* row_index = nullptr;
};

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, accumulated in fp32.
Status RmsNorm(const RmsNormArgs& args, cudaStream_t stream);

// residual[r] += x[r] (rounded to dtype and stored), then out[r] = RmsNorm(residual[r]).
// `args.x` is the value added; `residual` [rows, dim] is updated in place.
Status AddRmsNorm(const RmsNormArgs& args, void* residual, cudaStream_t stream);

}  // namespace ite::kernels

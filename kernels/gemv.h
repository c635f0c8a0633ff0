// The few-rows product behind GemmRunner (gemv.cu): used for m <= kGemvMaxRows outside
// batch-invariant mode.
#pragma once

#include "ite/kernels/gemm.h"

namespace ite::kernels::internal {

// Whether Gemv takes `g`: 1..kGemvMaxRows rows, k a multiple of 8, x and w 16-byte aligned, and
// one of the epilogue variants it has (rms_norm_x exactly with kSiluMul and kRopeKv, whose
// shapes must fit; fp32 output only with kStore).
bool GemvApplies(const GemmArgs& g);

Status Gemv(const GemmArgs& g, cudaStream_t stream);

}  // namespace ite::kernels::internal

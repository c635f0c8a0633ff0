// SwiGLU activation of the fused gate/up projection.
#pragma once

#include <cstdint>

#include "ite/kernels/kernel_types.h"

namespace ite::kernels {

// out[r, i] = silu(gate_up[r, i]) * gate_up[r, inter + i], computed in fp32.
// gate_up [rows, 2 * inter]; out [rows, inter].
Status SiluMul(DType dtype, const void* gate_up, int32_t rows, int32_t inter, void* out,
               cudaStream_t stream);

}  // namespace ite::kernels

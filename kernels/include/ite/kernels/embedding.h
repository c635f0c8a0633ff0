// Embedding gather.
#pragma once

#include <cstdint>

#include "ite/kernels/kernel_types.h"

namespace ite::kernels {

// out[t, :] = table[ids[t], :]. table [vocab, dim]; ids [n] device; out [n, dim].
// An id outside [0, vocab) yields a zero row (the scheduler validates ids before they get here;
// a kernel cannot return an error without a synchronisation).
Status Embedding(DType dtype, const void* table, int32_t vocab, int32_t dim, const int32_t* ids,
                 int32_t n, void* out, cudaStream_t stream);

}  // namespace ite::kernels

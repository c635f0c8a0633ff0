// Moving a step's tokens and rows on the device, so that a decode step reads the token sampled
// by the step before it without a round trip through the host, and copy-on-write of KV blocks
// is one launch.
#pragma once

#include <cstdint>

#include "ite/kernels/kernel_types.h"

namespace ite::kernels {

// In place, for r < n: a token t < 0 in tokens[r] means "the last token of sequence slot
// -t - 1": tokens[r] = last_tokens[-t - 1]. Non-negative tokens stay.
Status FeedTokens(int32_t* tokens, const int32_t* last_tokens, int32_t n, cudaStream_t stream);

// last_tokens[slots[i]] = sampled[i] for i < n and slots[i] >= 0.
Status StoreSampledTokens(const int32_t* sampled, const int32_t* slots, int32_t n,
                          int32_t* last_tokens, cudaStream_t stream);

// out[i, :] = x[rows[i], :] for i < n. x [*, cols], out [n, cols] of `dtype`.
Status GatherRows(DType dtype, const void* x, int32_t cols, const int32_t* rows, int32_t n,
                  void* out, cudaStream_t stream);

// Copies whole blocks of a paged pool laid out as `num_planes` planes (layer x K/V) of
// `plane_bytes` each, a block being `block_bytes` (a multiple of 16) inside its plane:
// for each pair p, block src[p] -> block dst[p] in every plane. src/dst [pairs] device.
Status CopyKvBlocks(void* pool, int64_t plane_bytes, int32_t num_planes, int64_t block_bytes,
                    const int32_t* src, const int32_t* dst, int32_t pairs, cudaStream_t stream);

}  // namespace ite::kernels

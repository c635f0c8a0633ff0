// Types shared by every kernel launcher: the activation dtype and the paged KV cache view.
// Launchers take raw device pointers (the CUDA backend owns the memory) and return a Status:
// bad shapes are an InvalidArgument naming the argument, a failed launch an Internal error.
#pragma once

#include <cstdint>

#include "common/status.h"

typedef struct CUstream_st* cudaStream_t;

namespace ite::kernels {

// Activation / KV dtype. Accumulation is always fp32.
enum class DType { kF16, kBF16 };

inline const char* DTypeName(DType dtype) { return dtype == DType::kF16 ? "f16" : "bf16"; }

// One layer's paged KV cache on the device.
// k, v: [num_blocks, block_size, num_kv_heads, head_dim], dtype `dtype`, contiguous.
// Position p of a sequence lives in block block_table[p / block_size], slot p % block_size.
struct PagedKvCache {
  void* k = nullptr;
  void* v = nullptr;
  DType dtype = DType::kBF16;
  int32_t num_blocks = 0;
  int32_t block_size = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
};

// Validates the fields of a cache view (non-null, positive sizes); `what` names it in errors.
Status ValidatePagedKvCache(const PagedKvCache& cache, const char* what);

}  // namespace ite::kernels

// Shared between the two prefill attention kernels (prefill_attention.cu: mma.sync, sm_80+;
// prefill_attention_sm90.cu: wgmma, sm_90a): the kernel parameters and the Hopper launcher.
#pragma once

#include <cstdint>

#include "ite/kernels/attention.h"

namespace ite::kernels::internal {

struct PrefillParams {
  const void* q;
  void* out;
  const void* k_cache;
  const void* v_cache;
  const int32_t* cu_seqlens_q;
  const int32_t* kv_lens;
  const int32_t* block_tables;
  int max_blocks_per_seq;
  int block_size;
  int block_shift;
  int num_heads;
  int group;             // query heads per kv head
  int64_t slot_stride;   // num_kv_heads * head_dim
  float scale_log2;      // softmax scale * log2(e)
  int64_t q_row_stride;  // elements between consecutive tokens' rows of q
};

// True where the current device is a Hopper (sm_90) and this build carries sm_90a code.
bool PrefillSm90Available();

// The wgmma kernel; `a` was validated by PrefillAttention.
Status PrefillAttentionSm90(const PrefillAttentionArgs& a, const PrefillParams& params,
                            cudaStream_t stream);

}  // namespace ite::kernels::internal

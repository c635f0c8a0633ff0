// Attention over the paged KV cache: FlashAttention-2 style prefill (causal, GQA, variable
// length, cached prefix) and split-KV flash-decoding. Both read K/V only from the cache, so the
// new tokens' K/V must have been written first (RopeKvWrite); a chunk of new tokens after a
// cached prefix (prefix caching, chunked prefill) is just a sequence whose kv length exceeds its
// query length. Supported: head_dim 64 and 128, f16 and bf16.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ite/kernels/kernel_types.h"

namespace ite::kernels {

// Which prefill kernel runs: kAuto picks the Hopper wgmma kernel at head_dim 128 on an sm_90
// device when the build has sm_90a code, else the mma.sync kernel (sm_80+). Naming one forces it
// (an error where it cannot run); tests and benchmarks use that to check both.
enum class PrefillKernel { kAuto, kMmaSync, kWgmma };

struct PrefillAttentionArgs {
  const void* q = nullptr;  // [total_q_tokens, num_heads, head_dim], cache dtype
  // Elements from one token's q row to the next (0: num_heads * head_dim, dense); a multiple of
  // 8, so that q may be the first columns of a fused q|k|v row.
  int64_t q_row_stride = 0;
  void* out = nullptr;  // [total_q_tokens, num_heads, head_dim], dense
  PagedKvCache cache;
  // [batch + 1] device: the query tokens of sequence b are rows [cu_seqlens_q[b], [b + 1]).
  const int32_t* cu_seqlens_q = nullptr;
  // [batch] device: tokens of sequence b in the cache, the new ones included; the new tokens
  // sit at positions [kv_len - q_len, kv_len) and attend causally.
  const int32_t* kv_lens = nullptr;
  const int32_t* block_tables = nullptr;  // [batch, max_blocks_per_seq] device
  int32_t max_blocks_per_seq = 0;
  int32_t batch = 0;
  int32_t max_q_len = 0;  // host-side bound on any q_len (sizes the grid)
  int32_t num_heads = 0;  // query heads; a multiple of cache.num_kv_heads
  float scale = 0.0f;     // softmax scale, usually 1 / sqrt(head_dim)
  PrefillKernel kernel = PrefillKernel::kAuto;
};

// Whether PrefillKernel::kWgmma can run on the current device.
bool PrefillWgmmaAvailable();

Status PrefillAttention(const PrefillAttentionArgs& args, cudaStream_t stream);

struct DecodeAttentionArgs {
  const void* q = nullptr;   // [batch, num_heads, head_dim]: one new token per sequence
  int64_t q_row_stride = 0;  // as PrefillAttentionArgs::q_row_stride
  void* out = nullptr;       // [batch, num_heads, head_dim], dense
  PagedKvCache cache;
  const int32_t* kv_lens = nullptr;       // [batch] device, >= 1 (the new token included)
  const int32_t* block_tables = nullptr;  // [batch, max_blocks_per_seq] device
  int32_t max_blocks_per_seq = 0;
  int32_t batch = 0;
  int32_t num_heads = 0;
  float scale = 0.0f;
  // Splits of each sequence's KV range (DecodeNumSplits picks it); with more than one the
  // partial results go to `workspace` and a second kernel merges them, or, on sm_90 with at
  // most 16 splits and cluster_merge, the splits' blocks form a cluster that merges them itself
  // (no second kernel; the workspace is then left alone). ITE_DECODE_NO_CLUSTER=1 in the
  // environment turns cluster merges off everywhere (for measuring).
  int32_t num_splits = 1;
  void* workspace = nullptr;  // DecodeWorkspaceBytes(...) bytes, device; unused for 1 split
  size_t workspace_bytes = 0;
  bool cluster_merge = true;
  // The K and V of the positions before each sequence's newest (kv_len - 1) are read before
  // the wait for the previous kernel (pdl.cuh), so their loads overlap its end: they must have
  // been written before the step's dependent kernels began (by earlier steps, or by the step's
  // block copies, ordinary launches). Q and the newest row, that kernel's output, are read after
  // the wait. ITE_DECODE_LATE_KV=1 reads everything after it (for measuring).
  bool early_kv = true;
};

// Split count for DecodeAttention: about two blocks per multiprocessor where the batch has
// fewer, else a split only where it fills the last wave of blocks clearly better; never a split
// shorter than a few KV tiles. max_kv_len is the longest sequence of the batch.
int32_t DecodeNumSplits(int32_t batch, int32_t num_heads, int32_t num_kv_heads, int32_t head_dim,
                        int32_t max_kv_len, int32_t num_multiprocessors);

size_t DecodeWorkspaceBytes(int32_t batch, int32_t num_heads, int32_t head_dim, int32_t num_splits);

Status DecodeAttention(const DecodeAttentionArgs& args, cudaStream_t stream);

// Decode attention of one sequence's new token followed by the output projection and its
// residual add, in one kernel: residual[hidden] += Attention(q) wo^T (no bias). At batch 1 the
// attention and the O product are each a short kernel whose start and end cost more than their
// bytes; together they save a kernel boundary a layer. One thread-block cluster per kv head
// attends its query heads (the context split over the cluster's blocks, merged through
// distributed shared memory); each block multiplies that head group's output by its slice of
// wo (loaded before the wait for the previous kernel) into fp32 partial sums, and the last kv
// head to finish a range of rows adds every kv head's partials, in kv-head order, into the
// residual. sm_90 only; PlanDecodeAttentionOut says whether and how it runs.
struct DecodeAttentionOutPlan {
  int32_t splits = 0;  // blocks per kv head (a cluster); 0: the kernel does not apply
  int32_t rows = 0;    // output rows (wo rows) per block
  size_t smem_bytes = 0;
  size_t workspace_bytes = 0;  // DecodeAttentionOutWorkspaceBytes for the model
  const char* why_not = "";
};

// For the current device and a model's shapes (hidden: wo's rows; num_heads * head_dim: its
// columns). Queries the device (microseconds): plan once per model.
DecodeAttentionOutPlan PlanDecodeAttentionOut(DType dtype, int32_t num_heads, int32_t num_kv_heads,
                                              int32_t head_dim, int32_t hidden);

// The partial sums of every kv head and the per-row-range counters.
size_t DecodeAttentionOutWorkspaceBytes(int32_t num_kv_heads, int32_t hidden);

struct DecodeAttentionOutArgs {
  // batch 1; num_splits, workspace and cluster_merge are not used (the plan decides).
  DecodeAttentionArgs attention;
  const void* wo = nullptr;  // [hidden, num_heads * head_dim], dtype of the cache
  void* residual = nullptr;  // [hidden]
  int32_t hidden = 0;
  // DecodeAttentionOutWorkspaceBytes bytes of device memory, zeroed once before the first
  // launch (each launch leaves its counters at zero); launches that share one run in order.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

Status DecodeAttentionOut(const DecodeAttentionOutArgs& args, const DecodeAttentionOutPlan& plan,
                          cudaStream_t stream);

}  // namespace ite::kernels

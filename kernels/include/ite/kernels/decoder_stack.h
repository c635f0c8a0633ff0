// The whole decoder stack of a Llama-architecture model for one token (decode at batch 1) in one
// persistent kernel (sm_90), instead of five kernels a layer.
//
// At batch 1 a decode step is a chain of weight-streaming products, each short; what a chain of
// kernels loses is the time between them: each waits for the previous one's last block and then
// pays a memory round trip before its weight stream ramps (about 3 us each, 80 boundaries in a
// Llama-3.2-1B step; docs/perf.md). Here one block per multiprocessor streams its share of every
// weight of every layer, in order, into shared-memory slots (bulk copies that never wait for
// activations: weights are constant), each warp keeping a few chunks of its own in flight ahead
// of the one it computes. The stages of a layer (norm + QKV, attention with RoPE and the KV
// write, O + residual, norm + gate|up + silu * mul, down + residual) meet at a grid-wide counter;
// the chunks in flight were meant to keep the memory busy across those waits.
//
// Experimental: today this kernel is slower than the five kernels a layer it replaces (1B 1.57
// against 0.83 ms a step on an H200, docs/perf.md), so it runs only where ITE_DECODER_STACK=1 is
// set; ITE_STACK_ABLATE (decoder_stack.cu) leaves parts out for measuring.
//
// Arithmetic as the weight-streaming products of gemv.cu and the decode attention: fp32 sums,
// the same rounding points to the activation dtype (Q after RoPE, K and V in the cache, the
// attention output, the residual after each add, silu * mul); only the order of the sums differs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "ite/kernels/kernel_types.h"

namespace ite::kernels {

// One layer's weights, [out, in] row-major (nn.Linear), in the stack's dtype.
struct DecoderStackLayer {
  const void* attn_norm = nullptr;  // [hidden]
  const void* qkv = nullptr;        // [(num_heads + 2 num_kv_heads) head_dim, hidden]
  const void* qkv_bias = nullptr;   // [qkv rows] or null
  const void* o = nullptr;          // [hidden, num_heads head_dim]
  const void* ffn_norm = nullptr;   // [hidden]
  const void* gate_up = nullptr;    // [2 inter, hidden]: gate rows, then up rows
  const void* down = nullptr;       // [hidden, inter]
  void* k_cache = nullptr;          // the layer's paged planes [num_blocks, block_size, kv heads, head_dim]
  void* v_cache = nullptr;
};

// Layers the launch carries (by value, in the kernel's parameters).
constexpr int kDecoderStackMaxLayers = 128;

struct DecoderStackArgs {
  DType dtype = DType::kBF16;
  int32_t num_layers = 0;
  const DecoderStackLayer* layers = nullptr;  // host array of num_layers
  int32_t hidden = 0;
  int32_t intermediate = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;  // 64 or 128
  float eps = 0.0f;
  float scale = 0.0f;  // attention score scale
  void* x = nullptr;   // [hidden]: the residual stream, the embedded token in, the last layer's out
  // The step (device): one sequence of one new token.
  const int32_t* positions = nullptr;     // [1]
  const int32_t* kv_slots = nullptr;      // [1]; outside the cache: the K/V are not written
  const int32_t* kv_lens = nullptr;       // [1], the new token included
  const int32_t* block_tables = nullptr;  // [max_blocks_per_seq]
  int32_t max_blocks_per_seq = 0;
  int32_t block_size = 0;
  int32_t num_blocks = 0;
  const float* inv_freq = nullptr;  // [head_dim / 2] RoPE frequencies
  // DecoderStackWorkspaceBytes of device memory, zeroed once before the first launch (the kernel
  // leaves its counters at zero when it ends).
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

size_t DecoderStackWorkspaceBytes(int32_t hidden, int32_t intermediate, int32_t num_heads,
                                  int32_t num_kv_heads, int32_t head_dim);

// Whether the current device and the shapes of `a` (dtype, sizes, head counts; not its
// pointers) take the fused stack, and ITE_DECODER_STACK=1 asks for it; if not, why (for the
// log). Call once before DecoderStack, not during a stream capture: it sets the kernel's
// shared-memory size.
bool DecoderStackApplies(const DecoderStackArgs& a, std::string* why);

// Runs every layer on a.x, where DecoderStackApplies said yes. A dependent launch: it may start
// while the kernel before it ends.
Status DecoderStack(const DecoderStackArgs& a, cudaStream_t stream);

}  // namespace ite::kernels

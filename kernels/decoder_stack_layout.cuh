// The fused decoder stack's (decoder_stack.cu) sizes and layouts, shared by its host launcher and
// its device code: the kernel's parameters, the workspace's and shared memory's layouts.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ite/kernels/decoder_stack.h"

namespace ite::kernels::decoder_stack {

constexpr int kComputeWarps = 8;
constexpr int kCompute = kComputeWarps * 32;
constexpr int kThreads = kCompute;
constexpr int kSlotBytes = 8 * 1024;
constexpr int kMaxWarpSlots = 6;    // ring slots per compute warp
[[maybe_unused]] constexpr int kMaxChunkUnits = 16;  // whole units in one chunk
constexpr int kMaxSplits = 16;      // context splits per kv head
constexpr int kMaxGroup = 16;      // query heads per kv head

enum Product { kQkv = 0, kO = 1, kGateUp = 2, kDown = 3 };

template <typename T>
struct StackParams {
  DecoderStackLayer layers[kDecoderStackMaxLayers];
  T* x;
  const int32_t* positions;
  const int32_t* kv_slots;
  const int32_t* kv_lens;
  const int32_t* block_tables;
  const float* inv_freq;
  float* qkv_raw;     // [qkv_dim]
  T* act;             // [inter]
  float* part_ml;     // [num_heads, kMaxSplits, 2]
  float* part_acc;    // [num_heads, kMaxSplits, head_dim]
  unsigned* counter;  // [0]: stages ended (blocks x stages), [1]: blocks done
  int32_t num_layers, hidden, inter, num_heads, num_kv_heads, group;
  int32_t q_dim, kv_dim, qkv_dim;
  int32_t max_blocks_per_seq, block_size;
  int64_t num_slots;
  float eps, scale_log2;
  int32_t ring_slots;  // per compute warp
  int32_t ablate;      // measuring only (ITE_STACK_ABLATE): 1 no dot products, 2 no attention, 4
                       // no stage waits; the results are then wrong
  int32_t xs_floats;  // the input vector's shared buffer (also the attention stage's)
};

// Workspace layout, in bytes from its start.
struct WorkspaceLayout {
  size_t counter, qkv_raw, act, part_ml, part_acc, total;
  WorkspaceLayout(int32_t hidden, int32_t inter, int32_t num_heads, int32_t num_kv_heads,
                  int32_t head_dim) {
    auto align = [](size_t v) { return (v + 255) / 256 * 256; };
    const size_t qkv_dim = size_t(num_heads + 2 * num_kv_heads) * head_dim;
    counter = 0;
    qkv_raw = align(counter + 2 * sizeof(unsigned));
    act = align(qkv_raw + qkv_dim * sizeof(float));
    part_ml = align(act + size_t(inter) * 2);
    part_acc = align(part_ml + size_t(num_heads) * kMaxSplits * 2 * sizeof(float));
    total = align(part_acc + size_t(num_heads) * kMaxSplits * head_dim * sizeof(float));
  }
};

// Shared memory: [full mbarriers | misc | xs | ring slots], the slots warp by warp (warp w's are
// w * slots_per_warp + [0, slots_per_warp)).
struct SmemLayout {
  size_t full, misc, xs, ring, total;
  __host__ __device__ SmemLayout(int slots_per_warp, int xs_floats) {
    full = 0;
    misc = full + kComputeWarps * kMaxWarpSlots * 8;  // float [32]
    xs = misc + 32 * sizeof(float);                    // float [xs_floats]
    ring = (xs + size_t(xs_floats) * sizeof(float) + 127) / 128 * 128;
    total = ring + size_t(kComputeWarps) * slots_per_warp * kSlotBytes;
  }
};

// Floats the attention stage keeps in xs: each warp's rotated Q of its kv head's group.
inline int AttentionFloats(int group, int head_dim) { return kComputeWarps * group * head_dim; }

}  // namespace ite::kernels::decoder_stack

// The decoder stack for one token in one persistent kernel (see decoder_stack.h for why).
//
// Grid: one block per multiprocessor (all resident: a cooperative launch) of kComputeWarps warps.
// Every product of every layer is cut the same way: block b owns output units
// [n b / G, n (b + 1) / G) (a unit is one weight row, or a gate row with its up row), split
// between its warps, and a warp takes its units in chunks of one 8 KB slot (whole units, or a
// wide unit's k range in pieces). Each warp has a few slots: lane 0 copies the warp's next
// chunks into them (cp.async.bulk, completion on the slot's mbarrier) walking the warp's
// schedule from the first layer's QKV to the last layer's down product, and each slot, once the
// warp has read it, takes the chunk that many places further on. Weights are evicted from L2
// first: the activations and the KV cache should stay there.
//
// Stages of a layer, each ended by every block adding 1 to a global counter and begun by
// waiting until the counter says every block ended the one before:
//   0 QKV:   x~ = x * attn_norm (fp32, rms of x summed on the way); raw q|k|v = x~ Wqkv^T * rms
//            (+ bias), fp32, to the workspace
//   1 attention, items (kv head, split of the context) of one warp: RoPE on the group's Q
//            (rounded to the dtype, as the multi-kernel path stores it); the split holding the
//            new token rotates its K and writes K and V into the cache first; then an online
//            softmax over the split's positions, 32 at a time, and the split's unnormalised
//            output and (max, sum) to the workspace
//   2 O:     the splits merged (rounded to the dtype) as the input; x += attn Wo^T
//   3 gate|up: x~ = x * ffn_norm; act = silu(x~ Wg^T * rms) * (x~ Wu^T * rms)
//   4 down:  x += act Wd^T
// The last block to leave sets the counters back to zero for the next launch.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>

#include "common/env_flag.h"
#include "cuda_check.h"
#include "decoder_stack_attention.cuh"
#include "device_info.h"
#include "dtype_utils.cuh"
#include "ite/kernels/decoder_stack.h"
#include "pdl.cuh"

namespace ite::kernels {
namespace {

using namespace decoder_stack;  // the kernel and its launcher are written over these helpers

template <typename T, int HD>
__global__ void __launch_bounds__(kThreads, 1)
    DecoderStackKernel(const __grid_constant__ StackParams<T> p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) unsigned char smem[];
  const SmemLayout layout(p.ring_slots, p.xs_floats);
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + layout.full);
  float* misc = reinterpret_cast<float*>(smem + layout.misc);
  float* xs = reinterpret_cast<float*>(smem + layout.xs);
  if (threadIdx.x == 0) {
    for (int i = 0; i < kComputeWarps * p.ring_slots; ++i) BarInit(&full[i], 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  LetDependentsStart();
  const int first_slot = threadIdx.x / 32 * p.ring_slots;
  WarpRing ring{smem + layout.ring + size_t(first_slot) * kSlotBytes, full + first_slot,
                p.ring_slots, EvictFirstPolicy()};
  CursorAt(p, 0, kQkv, &ring.cursor);
  // The weights are constant: each warp's first chunks are on their way before the previous
  // kernel has ended.
  if (threadIdx.x % 32 == 0) {
    for (int i = 0; i < ring.count; ++i)
      if (!IssueNext(p, &ring.cursor, ring.slots + size_t(i) * kSlotBytes, &ring.full[i],
                     ring.policy))
        break;
  }
  __syncwarp();
  WaitForPrerequisites();
  const unsigned blocks = gridDim.x;
  unsigned stage = 0;
  auto next_stage = [&] {
    EndStage(p.counter);
    ++stage;
    if (!(p.ablate & 4)) WaitStages(p.counter, blocks * stage);
  };
  for (int layer = 0; layer < p.num_layers; ++layer) {
    const DecoderStackLayer& l = p.layers[layer];
    float scale = LoadNormed(p, l.attn_norm, xs, misc);
    RunProduct(p, layer, kQkv, scale, xs, ring);
    next_stage();
    if (!(p.ablate & 2)) RunAttention<T, HD>(p, layer, xs);
    next_stage();
    LoadAttention<T, HD>(p, xs);
    RunProduct(p, layer, kO, 1.0f, xs, ring);
    next_stage();
    scale = LoadNormed(p, l.ffn_norm, xs, misc);
    RunProduct(p, layer, kGateUp, scale, xs, ring);
    next_stage();
    LoadActivation(p, xs);
    RunProduct(p, layer, kDown, 1.0f, xs, ring);
    if (layer + 1 < p.num_layers) next_stage();
  }
  // The last block out sets the counters back for the next launch (every block has passed its
  // last wait once it counts itself here).
  ComputeSync();
  if (threadIdx.x == 0) {
    __threadfence();
    if (atomicAdd(p.counter + 1, 1u) == blocks - 1) {
      atomicExch(p.counter, 0u);
      atomicExch(p.counter + 1, 0u);
    }
  }
#else
  __trap();
#endif
}

// The fused stack is slower than the five kernels a layer today (docs/perf.md): it is taken only
// where ITE_DECODER_STACK=1 asks for it, for measuring and for work on it.
bool StackAskedFor() {
  static const bool on = EnvFlag("ITE_DECODER_STACK");
  return on;
}

int XsFloats(const DecoderStackArgs& a) {
  const int group = a.num_kv_heads > 0 ? a.num_heads / a.num_kv_heads : 0;
  const int floats = std::max({a.hidden, a.intermediate, a.num_heads * a.head_dim,
                               AttentionFloats(group, a.head_dim)});
  return (floats + 7) / 8 * 8;  // XsAt's two halves of whole float4s
}

int MaxSmemPerBlock() {
  int device = 0, bytes = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
          cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return bytes;
}

// Ring slots per compute warp that fit beside the rest of the shared memory.
int RingSlots(const DecoderStackArgs& a) {
  const SmemLayout base(0, XsFloats(a));
  const int64_t room = int64_t{MaxSmemPerBlock()} - static_cast<int64_t>(base.total);
  return static_cast<int>(
      std::clamp<int64_t>(room / (int64_t{kComputeWarps} * kSlotBytes), 0, kMaxWarpSlots));
}

// ITE_STACK_ABLATE (measuring only): parts of the kernel left out, so that what each costs can be
// read from the step time; the outputs are then wrong.
int Ablation() {
  static const int bits = [] {
    const char* v = std::getenv("ITE_STACK_ABLATE");
    return v != nullptr ? std::atoi(v) : 0;
  }();
  return bits;
}

template <typename T, int HD>
cudaError_t AllowSmem(size_t bytes) {
  return cudaFuncSetAttribute(DecoderStackKernel<T, HD>,
                              cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

template <typename T, int HD>
Status Launch(const DecoderStackArgs& a, cudaStream_t stream) {
  auto p = std::make_unique<StackParams<T>>();
  std::copy(a.layers, a.layers + a.num_layers, p->layers);
  const WorkspaceLayout w(a.hidden, a.intermediate, a.num_heads, a.num_kv_heads, a.head_dim);
  char* ws = static_cast<char*>(a.workspace);
  p->x = static_cast<T*>(a.x);
  p->positions = a.positions;
  p->kv_slots = a.kv_slots;
  p->kv_lens = a.kv_lens;
  p->block_tables = a.block_tables;
  p->inv_freq = a.inv_freq;
  p->qkv_raw = reinterpret_cast<float*>(ws + w.qkv_raw);
  p->act = reinterpret_cast<T*>(ws + w.act);
  p->part_ml = reinterpret_cast<float*>(ws + w.part_ml);
  p->part_acc = reinterpret_cast<float*>(ws + w.part_acc);
  p->counter = reinterpret_cast<unsigned*>(ws + w.counter);
  p->num_layers = a.num_layers;
  p->hidden = a.hidden;
  p->inter = a.intermediate;
  p->num_heads = a.num_heads;
  p->num_kv_heads = a.num_kv_heads;
  p->group = a.num_heads / a.num_kv_heads;
  p->q_dim = a.num_heads * a.head_dim;
  p->kv_dim = a.num_kv_heads * a.head_dim;
  p->qkv_dim = p->q_dim + 2 * p->kv_dim;
  p->max_blocks_per_seq = a.max_blocks_per_seq;
  p->block_size = a.block_size;
  p->num_slots = int64_t{a.num_blocks} * a.block_size;
  p->eps = a.eps;
  p->scale_log2 = a.scale * 1.4426950408889634f;
  p->ring_slots = RingSlots(a);
  p->ablate = Ablation();
  p->xs_floats = XsFloats(a);
  const size_t smem = SmemLayout(p->ring_slots, p->xs_floats).total;
  auto kernel = DecoderStackKernel<T, HD>;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(CurrentDevice().multiprocessors);
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  // Cooperative: every block resident at once, or the launch fails (the stages wait on each
  // other). Dependent: the warps' first copies start while the embedding kernel ends.
  cudaLaunchAttribute attributes[2] = {};
  attributes[0].id = cudaLaunchAttributeCooperative;
  attributes[0].val.cooperative = 1;
  attributes[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attributes[1].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attributes;
  config.numAttrs = DependentLaunchEnabled() ? 2 : 1;
  const cudaError_t err = cudaLaunchKernelEx(&config, kernel, *p);
  if (err != cudaSuccess) cudaGetLastError();
  return CudaStatus(err, "DecoderStackKernel");
}

}  // namespace

size_t DecoderStackWorkspaceBytes(int32_t hidden, int32_t intermediate, int32_t num_heads,
                                  int32_t num_kv_heads, int32_t head_dim) {
  return WorkspaceLayout(hidden, intermediate, num_heads, num_kv_heads, head_dim).total;
}

bool DecoderStackApplies(const DecoderStackArgs& a, std::string* why) {
  auto no = [&](std::string reason) {
    if (why) *why = std::move(reason);
    return false;
  };
#if defined(ITE_KERNELS_SM90A)
  constexpr bool kBuilt = true;
#else
  constexpr bool kBuilt = false;
#endif
  if (!kBuilt) return no("the kernels were built without sm_90a");
  if (!StackAskedFor()) return no("ITE_DECODER_STACK=1 is not set");
  if (CurrentDevice().major < 9) return no("it needs compute capability 9.0 or newer");
  if (a.head_dim != 64 && a.head_dim != 128) return no("head_dim is not 64 or 128");
  if (a.num_kv_heads <= 0 || a.num_heads % a.num_kv_heads != 0 ||
      a.num_heads / a.num_kv_heads > kMaxGroup)
    return no("more than 16 query heads share a kv head");
  if (a.num_layers < 1 || a.num_layers > kDecoderStackMaxLayers)
    return no("more layers than the launch carries");
  const int32_t q_dim = a.num_heads * a.head_dim;
  if (a.hidden % 8 != 0 || a.intermediate % 8 != 0 || q_dim % 8 != 0)
    return no("a product's width is not a multiple of 8");
  if (RingSlots(a) < 2)
    return no("the shared memory holds fewer than two ring slots a warp beside the activations");
  const size_t smem = SmemLayout(RingSlots(a), XsFloats(a)).total;
  const cudaError_t err =
      a.dtype == DType::kF16
          ? (a.head_dim == 64 ? AllowSmem<__half, 64>(smem) : AllowSmem<__half, 128>(smem))
          : (a.head_dim == 64 ? AllowSmem<__nv_bfloat16, 64>(smem)
                              : AllowSmem<__nv_bfloat16, 128>(smem));
  if (err != cudaSuccess) {
    cudaGetLastError();
    return no(std::string("its shared memory was refused: ") + cudaGetErrorString(err));
  }
  return true;
}

Status DecoderStack(const DecoderStackArgs& a, cudaStream_t stream) {
  if (a.num_layers < 1 || a.num_layers > kDecoderStackMaxLayers || a.layers == nullptr ||
      (a.head_dim != 64 && a.head_dim != 128) || a.num_kv_heads <= 0)
    return InvalidArgument("DecoderStack: {} layers of head_dim {}", a.num_layers, a.head_dim);
  for (int i = 0; i < a.num_layers; ++i) {
    const DecoderStackLayer& l = a.layers[i];
    const void* ptrs[] = {l.attn_norm, l.qkv, l.o, l.ffn_norm, l.gate_up, l.down, l.k_cache,
                          l.v_cache};
    for (const void* ptr : ptrs)
      if (ptr == nullptr || reinterpret_cast<uintptr_t>(ptr) % 16 != 0)
        return InvalidArgument("DecoderStack: layer {}: a weight or cache plane is null or not "
                               "16-byte aligned", i);
  }
  if (a.x == nullptr || a.positions == nullptr || a.kv_slots == nullptr || a.kv_lens == nullptr ||
      a.block_tables == nullptr || a.inv_freq == nullptr || a.block_size <= 0)
    return InvalidArgument("DecoderStack: a step input is null");
  if (a.workspace == nullptr ||
      a.workspace_bytes < DecoderStackWorkspaceBytes(a.hidden, a.intermediate, a.num_heads,
                                                     a.num_kv_heads, a.head_dim))
    return InvalidArgument("DecoderStack: workspace too small");
  if (a.dtype == DType::kF16) {
    return a.head_dim == 64 ? Launch<__half, 64>(a, stream) : Launch<__half, 128>(a, stream);
  }
  return a.head_dim == 64 ? Launch<__nv_bfloat16, 64>(a, stream)
                          : Launch<__nv_bfloat16, 128>(a, stream);
}

}  // namespace ite::kernels

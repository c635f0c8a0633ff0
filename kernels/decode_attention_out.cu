// Decode attention of one sequence plus the output projection and its residual add, as one
// kernel (attention.h, DecodeAttentionOut).
//
// Grid: one cluster of `splits` blocks per kv head. Block (split s, kv head g) attends g's query
// heads over split s of the context (AttendSplit, as the decode attention kernel does). The
// cluster then merges its splits through distributed shared memory in two steps: block s merges
// its chunk of g's output (every split's rows for those elements), and every block gathers the
// chunks, so each holds g's whole attention output. It multiplies that by its slice of wo: rows
// [s * rows, (s + 1) * rows) of wo's columns for g, copied into shared memory before the wait
// for the previous kernel. So the O product is split along k by kv head: each block stores its
// rows' fp32 partial sums, and the last of the kv heads' blocks to finish a row range (a
// counter per range, no waiting) adds the partials of every kv head, in kv-head order, into the
// residual. The sums' order never depends on timing.
#include <cooperative_groups.h>

#include <algorithm>

#include "cluster_launch.cuh"
#include "cuda_check.h"
#include "decode_attention_block.cuh"
#include "ite/kernels/attention.h"

namespace ite::kernels {
namespace {

constexpr int kMaxSplits = 16;  // blocks of a cluster (sm_90's non-portable limit)
constexpr int kMaxGroupWidth = 16 * 128;  // a kv head's query heads x head_dim

struct AttentionOutParams {
  DecodeParams attn;  // one sequence; num_splits: blocks per cluster
  const void* wo;
  void* residual;
  float* partial;      // [kv heads][hidden]
  unsigned* counters;  // [splits]: kv heads done with a row range; left at zero
  int hidden;
  int q_dim;
  int rows;  // output rows (wo rows) per block
};

// head_dim 64: eight warps (the product's rows spread over more warps); 128: four (the stage
// buffers of eight would leave too little room for the slice of wo).
template <typename T, int D>
using OutTraits = DecodeTraits<T, D, D == 64 ? 8 : 4>;

constexpr size_t AlignUp(size_t n) { return (n + 127) / 128 * 128; }

// Shared memory: the attention's area, the kv head's attention output, the slice of wo.
template <typename Traits>
size_t SmemBytes(int width, int rows) {
  return AlignUp(Traits::kSmemBytes) + AlignUp(size_t(width) * sizeof(typename Traits::T)) +
         size_t(rows) * width * sizeof(typename Traits::T);
}

#if ITE_CLUSTER_CODE  // the helpers of the kernel's cluster code
constexpr int kRowsPerWarp = 16;

// Elements of a kv head's output that each block of its cluster merges: a whole number of
// 16-byte pieces, so that the gather moves pieces.
__device__ __forceinline__ int MergeChunk(int width, int splits) {
  return ((width + splits - 1) / splits + 7) / 8 * 8;
}

// acc[i] += the dot product of row i of [kRowsPerWarp][width] `w` with `a`, the warp's lanes
// each taking 8 of every 256 columns. Rows at or past `n` count as zero.
template <typename T>
__device__ __forceinline__ void DotRows(const T* w, const T* a, int width, int n, int lane,
                                        float (&acc)[kRowsPerWarp]) {
  for (int k = lane * 8; k < width; k += 256) {
    float af[8];
    Unpack8<T>(*reinterpret_cast<const uint4*>(a + k), af);
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      if (i < n) {
        float wf[8];
        Unpack8<T>(*reinterpret_cast<const uint4*>(w + int64_t{i} * width + k), wf);
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i] = fmaf(wf[j], af[j], acc[i]);
      }
    }
  }
}

// One step of ReduceRows: lanes whose bit kHalf is set keep rows [kHalf, 2 kHalf) of the
// 2 kHalf they hold (as acc[0, kHalf)), the others rows [0, kHalf); each sends the rows it
// gives up to its partner across that bit and adds the partner's share of the rows it keeps.
template <int kHalf>
__device__ __forceinline__ void ReduceStep(float (&acc)[kRowsPerWarp], int lane) {
  const bool upper = lane & kHalf;
#pragma unroll
  for (int i = 0; i < kHalf; ++i) {
    const float send = upper ? acc[i] : acc[i + kHalf];
    const float keep = upper ? acc[i + kHalf] : acc[i];
    acc[i] = keep + __shfl_xor_sync(0xffffffffu, send, kHalf);
  }
}

// After it, lanes i and i + 16 hold the warp's sum of acc[i] (a transposing reduction: 16
// shuffles for 16 sums instead of 80).
__device__ __forceinline__ float ReduceRows(float (&acc)[kRowsPerWarp], int lane) {
  ReduceStep<8>(acc, lane);
  ReduceStep<4>(acc, lane);
  ReduceStep<2>(acc, lane);
  ReduceStep<1>(acc, lane);
  return acc[0] + __shfl_xor_sync(0xffffffffu, acc[0], 16);
}
#endif

template <typename Traits>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    DecodeAttentionOutKernel(const AttentionOutParams p) {
#if ITE_CLUSTER_CODE
  using T = typename Traits::T;
  constexpr int D = Traits::kHeadDim, kWarps = Traits::kWarps;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  LetDependentsStart();
  const int splits = p.attn.num_splits, group = p.attn.group, width = group * D;
  const int split = blockIdx.x, kvh = blockIdx.y, tid = threadIdx.x, warp = tid / 32,
            lane = tid % 32;
  T* sa = reinterpret_cast<T*>(smem_raw + AlignUp(Traits::kSmemBytes));  // [width]
  T* sw = sa + AlignUp(size_t(width) * sizeof(T)) / sizeof(T);            // [rows][width]
  const int row0 = split * p.rows;
  const int nrows = max(0, min(p.rows, p.hidden - row0));
  cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
  float* const co = MergedRows<Traits>(smem_raw);  // [kRows][D]
  float* const clse = co + Traits::kRows * D;      // [kRows]
  AttendSplit<Traits>(
      p.attn, 0, kvh, kvh * group, group, split, smem_raw,
      [&](int row, int d, float val, float lse) {
        co[row * D + d] = val;
        if (d == 0) clse[row] = lse;
      },
      [&] {
        // The slice of wo is constant: its copy overlaps the previous kernel's end.
        const T* src = static_cast<const T*>(p.wo) + int64_t{row0} * p.q_dim + int64_t{kvh} * width;
        const int pieces_per_row = width / 8;
        for (int i = tid; i < nrows * pieces_per_row; i += Traits::kThreads) {
          const int r = i / pieces_per_row, c = i % pieces_per_row;
          CpAsync16(SmemAddr(sw + int64_t{r} * width + c * 8), src + int64_t{r} * p.q_dim + c * 8,
                    true);
        }
        CpAsyncCommit();
      });
  cluster.sync();  // every block's merged rows are in its shared memory
  // This block's chunk of the kv head's attention output, each element merged from the splits'
  // rows with weights 2^(lse - max) as the decode attention kernel's cluster merge does, and
  // rounded to T as the separate kernels store it.
  const int chunk = MergeChunk(width, splits);
  for (int idx = split * chunk + tid; idx < min(width, (split + 1) * chunk);
       idx += Traits::kThreads) {
    const int row = idx / D, d = idx % D;
    float lse[kMaxSplits];
    float mx = -INFINITY;
#pragma unroll
    for (int s = 0; s < kMaxSplits; ++s) {
      lse[s] = s < splits ? *cluster.map_shared_rank(clse + row, s) : -INFINITY;
      mx = fmaxf(mx, lse[s]);
    }
    float sum = 0.0f, acc = 0.0f;
    if (mx != -INFINITY) {
#pragma unroll
      for (int s = 0; s < kMaxSplits; ++s) {
        if (s < splits) {
          const float w = exp2f(lse[s] - mx);
          sum += w;
          acc += w * *cluster.map_shared_rank(co + row * D + d, s);
        }
      }
    }
    sa[idx] = FromFloat<T>(sum > 0.0f ? acc / sum : 0.0f);
  }
  cluster.sync();  // every chunk is merged
  // The other blocks' chunks, a 16-byte piece at a time.
  for (int i = tid; i < width / 8; i += Traits::kThreads) {
    const int owner = i * 8 / chunk;
    if (owner != split)
      reinterpret_cast<uint4*>(sa)[i] =
          *cluster.map_shared_rank(reinterpret_cast<const uint4*>(sa) + i, owner);
  }
  // The peers' chunks are read: they may leave once this block is done too.
  cluster.barrier_arrive();
  __syncthreads();  // sa complete; the slice of wo landed before AttendSplit returned
  float* partial = p.partial + int64_t{kvh} * p.hidden + row0;
  for (int r = warp * kRowsPerWarp; r < nrows; r += kWarps * kRowsPerWarp) {
    float acc[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) acc[i] = 0.0f;
    DotRows<T>(sw + int64_t{r} * width, sa, width, nrows - r, lane, acc);
    const float sum = ReduceRows(acc, lane);
    if (lane < kRowsPerWarp && r + lane < nrows) partial[r + lane] = sum;
  }
  // The last kv head to finish this row range adds every kv head's partial sums.
  __shared__ bool last;
  __syncthreads();
  if (tid == 0) {
    __threadfence();  // this block's partials, before the count that publishes them
    const unsigned done = atomicAdd(p.counters + split, 1u) + 1;
    last = done == gridDim.y;
    if (last) p.counters[split] = 0;  // every kv head has counted: ready for the next launch
  }
  __syncthreads();
  if (last) {
    __threadfence();
    T* residual = static_cast<T*>(p.residual) + row0;
    for (int r = tid; r < nrows; r += Traits::kThreads) {
      float sum = 0.0f;
      for (int h = 0; h < static_cast<int>(gridDim.y); ++h)
        sum += __ldcg(p.partial + int64_t{h} * p.hidden + row0 + r);
      residual[r] = FromFloat<T>(ToFloat(residual[r]) + sum);
    }
  }
  cluster.barrier_wait();
#else
  __trap();  // launched only where PlanDecodeAttentionOut found the cluster code
#endif
}

template <typename Traits>
cudaError_t AllowLaunch(size_t smem) {
  constexpr auto kernel = DecodeAttentionOutKernel<Traits>;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem));
  if (err == cudaSuccess)
    err = cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  if (err != cudaSuccess) cudaGetLastError();
  return err;
}

// Clusters of `cluster` blocks that run at once with `smem` bytes each (0: none, or an error).
template <typename Traits>
int ActiveClusters(int cluster, size_t smem) {
  if (AllowLaunch<Traits>(smem) != cudaSuccess) return 0;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = static_cast<unsigned>(cluster);
  attr.val.clusterDim.y = 1;
  attr.val.clusterDim.z = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(cluster));
  config.blockDim = dim3(Traits::kThreads);
  config.dynamicSmemBytes = smem;
  config.attrs = &attr;
  config.numAttrs = 1;
  int active = 0;
  if (cudaOccupancyMaxActiveClusters(&active, DecodeAttentionOutKernel<Traits>, &config) !=
      cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return active;
}

template <typename Traits>
DecodeAttentionOutPlan Plan(int32_t num_kv_heads, int32_t width, int32_t hidden) {
  DecodeAttentionOutPlan plan;
  int device = 0, major = 0, optin = 0;
  cudaFuncAttributes attr{};
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
          cudaSuccess ||
      cudaFuncGetAttributes(&attr, DecodeAttentionOutKernel<Traits>) != cudaSuccess) {
    cudaGetLastError();
    plan.why_not = "the device could not be queried";
    return plan;
  }
  // An image JIT-compiled from PTX older than compute_90 has the cluster code compiled out.
  if (major < 9 || attr.ptxVersion < 90) {
    plan.why_not = "needs thread-block clusters (sm_90)";
    return plan;
  }
  plan.why_not = "no cluster of its splits runs on this device";
  // The most splits that run: they spread the slices of wo over the most multiprocessors.
  for (int splits = kMaxSplits; splits >= 2; splits /= 2) {
    const int rows = (hidden + splits - 1) / splits;
    const size_t smem = SmemBytes<Traits>(width, rows);
    if (smem > static_cast<size_t>(optin)) {
      plan.why_not = "a block's slice of wo does not fit its shared memory";
      continue;
    }
    if (ActiveClusters<Traits>(splits, smem) == 0) continue;
    plan.splits = splits;
    plan.rows = rows;
    plan.smem_bytes = smem;
    plan.workspace_bytes = DecodeAttentionOutWorkspaceBytes(num_kv_heads, hidden);
    plan.why_not = "";
    return plan;
  }
  return plan;
}

template <typename Traits>
Status Launch(const DecodeAttentionOutArgs& a, const DecodeAttentionOutPlan& plan,
              const DecodeParams& attn, cudaStream_t stream) {
  const int32_t kv_heads = a.attention.cache.num_kv_heads;
  float* partial = static_cast<float*>(a.workspace);
  unsigned* counters = reinterpret_cast<unsigned*>(partial + int64_t{kv_heads} * a.hidden);
  AttentionOutParams p{attn,     a.wo,     a.residual,
                       partial,  counters, a.hidden,
                       attn.num_heads * Traits::kHeadDim, plan.rows};
  return CudaStatus(LaunchClustered(DecodeAttentionOutKernel<Traits>,
                                    dim3(plan.splits, kv_heads), Traits::kThreads,
                                    plan.smem_bytes, plan.splits, /*dependent=*/true, stream, p),
                    "DecodeAttentionOutKernel");
}

}  // namespace

size_t DecodeAttentionOutWorkspaceBytes(int32_t num_kv_heads, int32_t hidden) {
  return size_t(std::max(num_kv_heads, 0)) * std::max(hidden, 0) * sizeof(float) +
         kMaxSplits * sizeof(unsigned);
}

DecodeAttentionOutPlan PlanDecodeAttentionOut(DType dtype, int32_t num_heads, int32_t num_kv_heads,
                                              int32_t head_dim, int32_t hidden) {
  DecodeAttentionOutPlan none;
  if (num_kv_heads <= 0 || num_heads % num_kv_heads != 0 || hidden <= 0) {
    none.why_not = "bad head counts";
    return none;
  }
  if (num_heads / num_kv_heads > 16) {
    none.why_not = "more than 16 query heads a kv head";
    return none;
  }
  const int32_t width = num_heads / num_kv_heads * head_dim;
  const bool f16 = dtype == DType::kF16;
  if (head_dim == 64)
    return f16 ? Plan<OutTraits<__half, 64>>(num_kv_heads, width, hidden)
               : Plan<OutTraits<__nv_bfloat16, 64>>(num_kv_heads, width, hidden);
  if (head_dim == 128)
    return f16 ? Plan<OutTraits<__half, 128>>(num_kv_heads, width, hidden)
               : Plan<OutTraits<__nv_bfloat16, 128>>(num_kv_heads, width, hidden);
  none.why_not = "head_dim other than 64 or 128";
  return none;
}

Status DecodeAttentionOut(const DecodeAttentionOutArgs& a, const DecodeAttentionOutPlan& plan,
                          cudaStream_t stream) {
  const DecodeAttentionArgs& at = a.attention;
  ITE_RETURN_IF_ERROR(CheckDecodeAttentionArgs(at, "DecodeAttentionOut"));
  if (at.batch != 1) return InvalidArgument("DecodeAttentionOut: batch {}, not 1", at.batch);
  if (a.wo == nullptr || a.residual == nullptr || a.hidden <= 0)
    return InvalidArgument("DecodeAttentionOut: wo, residual and hidden must be set");
  const int32_t kv_heads = at.cache.num_kv_heads;
  if (plan.splits < 2 || plan.splits > kMaxSplits ||
      int64_t{plan.splits} * plan.rows < a.hidden ||
      at.num_heads / kv_heads * at.cache.head_dim > kMaxGroupWidth)
    return InvalidArgument("DecodeAttentionOut: the plan does not apply ({})", plan.why_not);
  const size_t need = DecodeAttentionOutWorkspaceBytes(kv_heads, a.hidden);
  if (a.workspace == nullptr || a.workspace_bytes < need)
    return InvalidArgument("DecodeAttentionOut: needs a {}-byte workspace, got {}", need,
                           a.workspace_bytes);
  auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  if (!aligned(a.wo)) return InvalidArgument("DecodeAttentionOut: wo not 16-byte aligned");
  DecodeAttentionArgs one = at;
  one.num_splits = plan.splits;
  one.workspace = nullptr;
  const DecodeParams params = DecodeParamsOf(one);
  const bool f16 = at.cache.dtype == DType::kF16;
  if (at.cache.head_dim == 64) {
    return f16 ? Launch<OutTraits<__half, 64>>(a, plan, params, stream)
               : Launch<OutTraits<__nv_bfloat16, 64>>(a, plan, params, stream);
  }
  return f16 ? Launch<OutTraits<__half, 128>>(a, plan, params, stream)
             : Launch<OutTraits<__nv_bfloat16, 128>>(a, plan, params, stream);
}

}  // namespace ite::kernels

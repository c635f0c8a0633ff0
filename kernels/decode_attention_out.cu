// Decode attention of one sequence plus the output projection and its residual add, as one
// kernel (attention.h, DecodeAttentionOut).
//
// Grid: `clusters` clusters of kv_heads x splits blocks. Block (kv head h, split s) of every
// cluster attends h's query heads over split s of the context (AttendSplit, as the decode
// attention kernel does), so every cluster computes the whole attention row; the O product
// needs all heads, and a cluster is the widest group whose blocks can exchange results without
// a trip through global memory. Each block then merges the splits of every head from its
// peers' shared memory into the attention row (rounded to the activation dtype, as the
// separate kernels store it) and multiplies it by `cols` rows of wo that it copied into its
// shared memory at its start, before the wait for the previous kernel. So each block reads
// 1/(kv_heads x splits) of the context and 1/blocks of wo, and no other kernel sits between
// the QKV product and the next layer's norm.
#include <cooperative_groups.h>

#include <algorithm>

#include "cluster_launch.cuh"
#include "cuda_check.h"
#include "decode_attention_block.cuh"
#include "ite/kernels/attention.h"

namespace ite::kernels {
namespace {

constexpr int kMaxSplits = 16;  // blocks of a cluster (sm_90's non-portable limit)

struct AttentionOutParams {
  DecodeParams attn;  // one sequence; num_splits: the splits of each kv head
  const void* wo;
  void* residual;
  int hidden;
  int q_dim;
  int cols;
};

// head_dim 64: eight warps, so that a split's tiles are few per warp; 128: four (the stage
// buffers of eight would not leave room for wo's rows).
template <typename T, int D>
using OutTraits = DecodeTraits<T, D, D == 64 ? 8 : 4>;

constexpr size_t AlignUp(size_t n) { return (n + 127) / 128 * 128; }

// Bytes of shared memory: the attention's area, the attention row, `cols` rows of wo.
template <typename Traits>
size_t SmemBytes(int q_dim, int cols) {
  return AlignUp(Traits::kSmemBytes) + AlignUp(size_t(q_dim) * sizeof(typename Traits::T)) +
         size_t(cols) * q_dim * sizeof(typename Traits::T);
}

template <typename Traits>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    DecodeAttentionOutKernel(const AttentionOutParams p) {
#if ITE_CLUSTER_CODE
  using T = typename Traits::T;
  constexpr int D = Traits::kHeadDim, kWarps = Traits::kWarps;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  LetDependentsStart();
  T* sa = reinterpret_cast<T*>(smem_raw + AlignUp(Traits::kSmemBytes));  // [q_dim]
  T* sw = reinterpret_cast<T*>(reinterpret_cast<unsigned char*>(sa) +
                               AlignUp(size_t(p.q_dim) * sizeof(T)));  // [cols][q_dim]
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  // This block's rows of wo: constant, so copied before AttendSplit's wait. AttendSplit's last
  // cp.async wait covers them.
  const int c0 = blockIdx.x * p.cols;
  const int ncols = max(0, min(p.cols, p.hidden - c0));
  {
    const T* wo = static_cast<const T*>(p.wo) + int64_t{c0} * p.q_dim;
    const int pieces = ncols * p.q_dim / 8;
    for (int i = tid; i < pieces; i += Traits::kThreads)
      CpAsync16(SmemAddr(sw + i * 8), wo + i * 8, true);
    CpAsyncCommit();
  }
  cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int splits = p.attn.num_splits, group = p.attn.group;
  const int kvh = rank / splits;
  float* const co = MergedRows<Traits>(smem_raw);  // [kRows][D]
  float* const clse = co + Traits::kRows * D;      // [kRows]
  AttendSplit<Traits>(p.attn, 0, kvh, kvh * group, group, rank % splits, smem_raw,
                      [&](int row, int d, float val, float lse) {
                        co[row * D + d] = val;
                        if (d == 0) clse[row] = lse;
                      });
  cluster.sync();  // every block's merged rows are in its shared memory
  // The attention row: head h's splits are blocks h / group * splits + s of the cluster,
  // weighted by 2^(lse - max) as the decode attention kernel's cluster merge does.
  for (int idx = tid; idx < p.q_dim; idx += Traits::kThreads) {
    const int h = idx / D, d = idx % D, first = h / group * splits, row = h % group;
    float lse[kMaxSplits];
    float mx = -INFINITY;
#pragma unroll
    for (int s = 0; s < kMaxSplits; ++s) {
      lse[s] = s < splits ? *cluster.map_shared_rank(clse + row, first + s) : -INFINITY;
      mx = fmaxf(mx, lse[s]);
    }
    float sum = 0.0f, acc = 0.0f;
    if (mx != -INFINITY) {
#pragma unroll
      for (int s = 0; s < kMaxSplits; ++s) {
        if (s < splits) {
          const float w = exp2f(lse[s] - mx);
          sum += w;
          acc += w * *cluster.map_shared_rank(co + row * D + d, first + s);
        }
      }
    }
    sa[idx] = FromFloat<T>(sum > 0.0f ? acc / sum : 0.0f);
  }
  // The peers' rows are read: they may leave once this block is past the product too.
  cluster.barrier_arrive();
  __syncthreads();  // sa written
  T* residual = static_cast<T*>(p.residual);
  for (int c = warp; c < ncols; c += kWarps) {
    const T* w = sw + int64_t{c} * p.q_dim;
    float acc = 0.0f;
    for (int k = lane * 8; k < p.q_dim; k += 32 * 8) {
      float wf[8], af[8];
      Unpack8<T>(*reinterpret_cast<const uint4*>(w + k), wf);
      Unpack8<T>(*reinterpret_cast<const uint4*>(sa + k), af);
#pragma unroll
      for (int j = 0; j < 8; ++j) acc = fmaf(wf[j], af[j], acc);
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) residual[c0 + c] = FromFloat<T>(ToFloat(residual[c0 + c]) + acc);
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
DecodeAttentionOutPlan Plan(int32_t num_kv_heads, int32_t q_dim, int32_t hidden) {
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
  for (int limit : {kMaxSplits, 8}) {
    const int splits = limit / num_kv_heads;
    if (splits < 1) continue;
    const int cluster = num_kv_heads * splits;
    // One block per multiprocessor (the most shared memory) gives the fewest clusters; with
    // fewer bytes they fit at least as well.
    const int clusters = ActiveClusters<Traits>(cluster, static_cast<size_t>(optin));
    if (clusters == 0) continue;
    const int blocks = clusters * cluster;
    const int cols = (hidden + blocks - 1) / blocks;
    const size_t smem = SmemBytes<Traits>(q_dim, cols);
    if (smem > static_cast<size_t>(optin)) {
      plan.why_not = "a block's rows of wo do not fit its shared memory";
      return plan;
    }
    if (AllowLaunch<Traits>(smem) != cudaSuccess) break;
    plan.splits = splits;
    plan.cluster = cluster;
    plan.clusters = clusters;
    plan.cols = cols;
    plan.smem_bytes = smem;
    return plan;
  }
  plan.why_not = "no cluster of the kv heads runs on this device";
  return plan;
}

template <typename Traits>
Status Launch(const DecodeAttentionOutArgs& a, const DecodeAttentionOutPlan& plan,
              const DecodeParams& attn, cudaStream_t stream) {
  AttentionOutParams p{attn, a.wo, a.residual, a.hidden, attn.num_heads * Traits::kHeadDim,
                       plan.cols};
  return CudaStatus(LaunchClustered(DecodeAttentionOutKernel<Traits>,
                                    dim3(plan.clusters * plan.cluster), Traits::kThreads,
                                    plan.smem_bytes, plan.cluster, /*dependent=*/true, stream, p),
                    "DecodeAttentionOutKernel");
}

}  // namespace

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
  const int32_t q_dim = num_heads * head_dim;
  const bool f16 = dtype == DType::kF16;
  if (head_dim == 64)
    return f16 ? Plan<OutTraits<__half, 64>>(num_kv_heads, q_dim, hidden)
               : Plan<OutTraits<__nv_bfloat16, 64>>(num_kv_heads, q_dim, hidden);
  if (head_dim == 128)
    return f16 ? Plan<OutTraits<__half, 128>>(num_kv_heads, q_dim, hidden)
               : Plan<OutTraits<__nv_bfloat16, 128>>(num_kv_heads, q_dim, hidden);
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
  if (plan.splits <= 0 || plan.cluster != at.cache.num_kv_heads * plan.splits ||
      plan.cluster > kMaxSplits || int64_t{plan.clusters} * plan.cluster * plan.cols < a.hidden)
    return InvalidArgument("DecodeAttentionOut: the plan does not apply ({})", plan.why_not);
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

// The vision tower's operators. The tower runs once per image on at most a few thousand rows,
// so these are plain kernels: one block per row for layernorm, tiles of 32 query rows per head
// for attention (one block per query row and head for head sizes it does not take), grid-stride
// loops for the element-wise ops.
#include <cmath>

#include "cuda_check.h"
#include "dtype_utils.cuh"
#include "ite/kernels/vision.h"

namespace ite::kernels {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void LayerNormKernel(const T* __restrict__ x, const T* __restrict__ w,
                                const T* __restrict__ b, T* out, int dim, float eps) {
  __shared__ float scratch[32];
  const T* xr = x + int64_t{blockIdx.x} * dim;
  T* o = out + int64_t{blockIdx.x} * dim;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) sum += ToFloat(xr[i]);
  const float mean = BlockSum(sum, scratch) / dim;
  float var = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float d = ToFloat(xr[i]) - mean;
    var += d * d;
  }
  const float inv = rsqrtf(BlockSum(var, scratch) / dim + eps);
  // Every thread has read its elements before any writes (BlockSum synchronises), so out may
  // alias x.
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    o[i] = FromFloat<T>((ToFloat(xr[i]) - mean) * inv * ToFloat(w[i]) + ToFloat(b[i]));
}

template <typename T>
__global__ void AddKernel(T* x, const T* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    x[i] = FromFloat<T>(ToFloat(x[i]) + ToFloat(y[i]));
}

template <typename T>
__global__ void GeluKernel(T* x, int64_t n, bool quick) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float v = ToFloat(x[i]);
    const float g = quick ? v / (1.0f + __expf(-1.702f * v))
                          : 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    x[i] = FromFloat<T>(g);
  }
}

template <typename T>
__global__ void ConvertKernel(const float* __restrict__ src, T* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    out[i] = FromFloat<T>(src[i]);
}

// Block (query row, head): scores of the query against every key into shared memory, softmax,
// then each thread accumulates a slice of the head's output dimensions over all keys.
template <typename T>
__global__ void DenseAttentionKernel(const T* __restrict__ qkv, T* __restrict__ out, int rows,
                                     int num_heads, int head_dim, float scale) {
  extern __shared__ float smem[];  // q [head_dim], scores [rows]
  __shared__ float scratch[32];
  float* q = smem;
  float* s = smem + head_dim;
  const int row = blockIdx.x, head = blockIdx.y;
  const int64_t hidden = int64_t{num_heads} * head_dim, width = 3 * hidden;
  const T* qr = qkv + row * width + int64_t{head} * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) q[d] = ToFloat(qr[d]) * scale;
  __syncthreads();
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < rows; j += blockDim.x) {
    const T* k = qkv + j * width + hidden + int64_t{head} * head_dim;
    float dot = 0.0f;
    for (int d = 0; d < head_dim; ++d) dot += q[d] * ToFloat(k[d]);
    s[j] = dot;
    mx = fmaxf(mx, dot);
  }
  mx = BlockMax(mx, scratch);
  float sum = 0.0f;
  for (int j = threadIdx.x; j < rows; j += blockDim.x) {
    s[j] = __expf(s[j] - mx);
    sum += s[j];
  }
  const float inv = 1.0f / BlockSum(sum, scratch);  // synchronises: every s[j] is written
  T* o = out + row * hidden + int64_t{head} * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    const T* v = qkv + 2 * hidden + int64_t{head} * head_dim + d;
    float acc = 0.0f;
    for (int j = 0; j < rows; ++j) acc += s[j] * ToFloat(v[j * width]);
    o[d] = FromFloat<T>(acc * inv);
  }
}

// Tiled version for head_dim 16-64 (CLIP's is 64): block (32 query rows, head), 128 threads,
// 4 per query row. Key tiles of 32 go through shared memory once per block instead of once per
// query; each thread keeps its row's online-softmax state and a quarter of its output row.
constexpr int kTileRows = 32;
constexpr int kTileThreads = 128;

template <typename T, int D>
__global__ void __launch_bounds__(kTileThreads)
    DenseAttentionTiledKernel(const T* __restrict__ qkv, T* __restrict__ out, int rows,
                              int num_heads, float scale) {
  constexpr int kPad = D + 1;  // odd row pitch: the 4 threads of a row read other banks
  constexpr int kSlice = D / 4;
  __shared__ float sq[kTileRows][kPad], sk[kTileRows][kPad], sv[kTileRows][D];
  __shared__ float sp[kTileRows][kTileRows + 1];
  const int head = blockIdx.y, q0 = blockIdx.x * kTileRows;
  const int tid = threadIdx.x, qr = tid / 4, part = tid % 4;
  const int64_t hidden = int64_t{num_heads} * D, width = 3 * hidden;
  const T* base = qkv + int64_t{head} * D;
  for (int i = tid; i < kTileRows * D; i += kTileThreads) {
    const int r = i / D, d = i % D;
    sq[r][d] = q0 + r < rows ? ToFloat(base[(q0 + r) * width + d]) * scale : 0.0f;
  }
  float m = -INFINITY, l = 0.0f, o[kSlice];
#pragma unroll
  for (int d = 0; d < kSlice; ++d) o[d] = 0.0f;
  for (int k0 = 0; k0 < rows; k0 += kTileRows) {
    __syncthreads();  // the previous tile's K, V and P are consumed (and sq written)
    for (int i = tid; i < kTileRows * D; i += kTileThreads) {
      const int r = i / D, d = i % D;
      const bool in = k0 + r < rows;
      sk[r][d] = in ? ToFloat(base[(k0 + r) * width + hidden + d]) : 0.0f;
      sv[r][d] = in ? ToFloat(base[(k0 + r) * width + 2 * hidden + d]) : 0.0f;
    }
    __syncthreads();
    // Scores of row qr against keys part, part + 4, ...: 8 per thread.
    float sc[kTileRows / 4];
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kTileRows / 4; ++j) {
      const int key = part + 4 * j;
      float dot = 0.0f;
#pragma unroll
      for (int d = 0; d < D; ++d) dot = fmaf(sq[qr][d], sk[key][d], dot);
      sc[j] = k0 + key < rows ? dot : -INFINITY;
      tile_max = fmaxf(tile_max, sc[j]);
    }
    // The 4 threads of a row are consecutive lanes.
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
    const float m_new = fmaxf(m, tile_max);  // finite: every tile has at least one key
    const float alpha = __expf(m - m_new);
    float tile_sum = 0.0f;
#pragma unroll
    for (int j = 0; j < kTileRows / 4; ++j) {
      const float pj = __expf(sc[j] - m_new);
      sp[qr][part + 4 * j] = pj;
      tile_sum += pj;
    }
    tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 1);
    tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 2);
    l = l * alpha + tile_sum;
    m = m_new;
    __syncwarp();  // a row's P is written by its own 4 lanes, read by them below
#pragma unroll
    for (int d = 0; d < kSlice; ++d) o[d] *= alpha;
    for (int j = 0; j < kTileRows; ++j) {
      const float pj = sp[qr][j];
#pragma unroll
      for (int d = 0; d < kSlice; ++d) o[d] = fmaf(pj, sv[j][part * kSlice + d], o[d]);
    }
  }
  if (q0 + qr >= rows) return;
  T* dst = out + (q0 + qr) * hidden + int64_t{head} * D + part * kSlice;
  const float inv = 1.0f / l;
#pragma unroll
  for (int d = 0; d < kSlice; ++d) dst[d] = FromFloat<T>(o[d] * inv);
}

template <typename T>
Status LaunchDense(const DenseAttentionArgs& a, cudaStream_t stream) {
  const T* qkv = static_cast<const T*>(a.qkv);
  T* out = static_cast<T*>(a.out);
  const dim3 tiles((a.rows + kTileRows - 1) / kTileRows, a.num_heads);
  switch (a.head_dim) {
    case 16:
      DenseAttentionTiledKernel<T, 16><<<tiles, kTileThreads, 0, stream>>>(qkv, out, a.rows,
                                                                          a.num_heads, a.scale);
      return LaunchStatus("DenseAttentionTiledKernel");
    case 32:
      DenseAttentionTiledKernel<T, 32><<<tiles, kTileThreads, 0, stream>>>(qkv, out, a.rows,
                                                                          a.num_heads, a.scale);
      return LaunchStatus("DenseAttentionTiledKernel");
    case 64:
      DenseAttentionTiledKernel<T, 64><<<tiles, kTileThreads, 0, stream>>>(qkv, out, a.rows,
                                                                          a.num_heads, a.scale);
      return LaunchStatus("DenseAttentionTiledKernel");
    default:
      break;
  }
  const dim3 grid(a.rows, a.num_heads);
  const size_t smem = sizeof(float) * (static_cast<size_t>(a.head_dim) + a.rows);
  DenseAttentionKernel<<<grid, 128, smem, stream>>>(qkv, out, a.rows, a.num_heads, a.head_dim,
                                                    a.scale);
  return LaunchStatus("DenseAttentionKernel");
}

int Blocks(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 4096));
}

}  // namespace

Status LayerNorm(const LayerNormArgs& a, cudaStream_t stream) {
  if (a.x == nullptr || a.weight == nullptr || a.bias == nullptr || a.out == nullptr)
    return InvalidArgument("LayerNorm: x, weight, bias and out must be non-null");
  if (a.rows < 0 || a.dim <= 0) return InvalidArgument("LayerNorm: rows {} dim {}", a.rows, a.dim);
  if (!(a.eps >= 0.0f)) return InvalidArgument("LayerNorm: eps {}", a.eps);
  if (a.rows == 0) return Status::Ok();
  const int threads = std::min(1024, std::max(32, (a.dim / 4 + 31) / 32 * 32));
  if (a.dtype == DType::kF16) {
    LayerNormKernel<__half><<<a.rows, threads, 0, stream>>>(
        static_cast<const __half*>(a.x), static_cast<const __half*>(a.weight),
        static_cast<const __half*>(a.bias), static_cast<__half*>(a.out), a.dim, a.eps);
  } else {
    LayerNormKernel<__nv_bfloat16><<<a.rows, threads, 0, stream>>>(
        static_cast<const __nv_bfloat16*>(a.x), static_cast<const __nv_bfloat16*>(a.weight),
        static_cast<const __nv_bfloat16*>(a.bias), static_cast<__nv_bfloat16*>(a.out), a.dim,
        a.eps);
  }
  return LaunchStatus("LayerNormKernel");
}

Status AddInPlace(DType dtype, void* x, const void* y, int64_t n, cudaStream_t stream) {
  if (x == nullptr || y == nullptr) return InvalidArgument("AddInPlace: null pointer");
  if (n <= 0) return Status::Ok();
  if (dtype == DType::kF16) {
    AddKernel<<<Blocks(n), kThreads, 0, stream>>>(static_cast<__half*>(x),
                                                  static_cast<const __half*>(y), n);
  } else {
    AddKernel<<<Blocks(n), kThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(x),
                                                  static_cast<const __nv_bfloat16*>(y), n);
  }
  return LaunchStatus("AddKernel");
}

Status Gelu(DType dtype, GeluKind kind, void* x, int64_t n, cudaStream_t stream) {
  if (x == nullptr) return InvalidArgument("Gelu: null pointer");
  if (n <= 0) return Status::Ok();
  const bool quick = kind == GeluKind::kQuick;
  if (dtype == DType::kF16) {
    GeluKernel<<<Blocks(n), kThreads, 0, stream>>>(static_cast<__half*>(x), n, quick);
  } else {
    GeluKernel<<<Blocks(n), kThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(x), n, quick);
  }
  return LaunchStatus("GeluKernel");
}

Status ConvertFromF32(DType dtype, const float* src, void* out, int64_t n, cudaStream_t stream) {
  if (src == nullptr || out == nullptr) return InvalidArgument("ConvertFromF32: null pointer");
  if (n <= 0) return Status::Ok();
  if (dtype == DType::kF16) {
    ConvertKernel<<<Blocks(n), kThreads, 0, stream>>>(src, static_cast<__half*>(out), n);
  } else {
    ConvertKernel<<<Blocks(n), kThreads, 0, stream>>>(src, static_cast<__nv_bfloat16*>(out), n);
  }
  return LaunchStatus("ConvertKernel");
}

Status DenseAttention(const DenseAttentionArgs& a, cudaStream_t stream) {
  if (a.qkv == nullptr || a.out == nullptr) return InvalidArgument("DenseAttention: null pointer");
  if (a.rows < 0 || a.rows > kDenseAttentionMaxRows || a.num_heads <= 0 || a.head_dim <= 0 ||
      a.head_dim > 256)
    return InvalidArgument("DenseAttention: rows {} (max {}), heads {}, head_dim {} (max 256)",
                           a.rows, kDenseAttentionMaxRows, a.num_heads, a.head_dim);
  if (a.rows == 0) return Status::Ok();
  if (a.dtype == DType::kF16) return LaunchDense<__half>(a, stream);
  return LaunchDense<__nv_bfloat16>(a, stream);
}

}  // namespace ite::kernels

// Embedding gather: one block per token, 16-byte copies when dim % 8 == 0.
#include "cuda_check.h"
#include "dtype_utils.cuh"
#include "ite/kernels/embedding.h"
#include "pdl.cuh"

namespace ite::kernels {
namespace {

template <typename T>
__global__ void EmbeddingKernel(const T* __restrict__ table, int vocab, int dim,
                                const int32_t* __restrict__ ids, T* __restrict__ out) {
  LetDependentsStart();
  WaitForPrerequisites();
  const int32_t id = ids[blockIdx.x];
  T* dst = out + int64_t{blockIdx.x} * dim;
  const bool valid = id >= 0 && id < vocab;
  const T* src = table + int64_t{valid ? id : 0} * dim;
  if (dim % 8 == 0) {
    // Two 16-byte loads in flight per thread before the stores.
    const uint4 zero = make_uint4(0, 0, 0, 0);
    const uint4* s4 = reinterpret_cast<const uint4*>(src);
    uint4* d4 = reinterpret_cast<uint4*>(dst);
    const int nvec = dim / 8;
    for (int i = threadIdx.x; i < nvec; i += 2 * blockDim.x) {
      const int j = i + blockDim.x;
      const uint4 a = valid ? s4[i] : zero;
      const uint4 b = valid && j < nvec ? s4[j] : zero;
      d4[i] = a;
      if (j < nvec) d4[j] = b;
    }
  } else {
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
      dst[i] = valid ? src[i] : FromFloat<T>(0.0f);
    }
  }
}

}  // namespace

Status Embedding(DType dtype, const void* table, int32_t vocab, int32_t dim, const int32_t* ids,
                 int32_t n, void* out, cudaStream_t stream) {
  if (table == nullptr || ids == nullptr || out == nullptr) {
    return InvalidArgument("Embedding: table, ids and out must be non-null");
  }
  if (vocab <= 0 || dim <= 0 || n < 0) {
    return InvalidArgument("Embedding: bad shape vocab={} dim={} n={}", vocab, dim, n);
  }
  if (n == 0) return Status::Ok();
  const int work = dim % 8 == 0 ? (dim / 8 + 1) / 2 : dim;
  const int threads = std::min(1024, std::max(32, (work + 31) / 32 * 32));
  if (dtype == DType::kF16) {
    return CudaStatus(LaunchDependent(EmbeddingKernel<__half>, n, threads, 0, stream,
                                      static_cast<const __half*>(table), vocab, dim, ids,
                                      static_cast<__half*>(out)),
                      "EmbeddingKernel");
  }
  return CudaStatus(LaunchDependent(EmbeddingKernel<__nv_bfloat16>, n, threads, 0, stream,
                                    static_cast<const __nv_bfloat16*>(table), vocab, dim, ids,
                                    static_cast<__nv_bfloat16*>(out)),
                    "EmbeddingKernel");
}

}  // namespace ite::kernels

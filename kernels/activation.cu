// silu(gate) * up: a grid-stride loop over 8-element vectors (scalar when inter % 8 != 0).
#include "cuda_check.h"
#include "dtype_utils.cuh"
#include "ite/kernels/activation.h"
#include "pdl.cuh"

namespace ite::kernels {
namespace {

__device__ __forceinline__ float Silu(float x) { return x / (1.0f + __expf(-x)); }

template <typename T>
__global__ void SiluMulVecKernel(const T* __restrict__ gate_up, T* __restrict__ out, int inter,
                                 int64_t total_vecs) {
  LetDependentsStart();
  WaitForPrerequisites();
  const int vecs_per_row = inter / 8;
  for (int64_t v = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; v < total_vecs;
       v += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = v / vecs_per_row;
    const int c = static_cast<int>(v % vecs_per_row);
    const uint4* row = reinterpret_cast<const uint4*>(gate_up + r * 2 * inter);
    float g[8], u[8];
    Unpack8<T>(row[c], g);
    Unpack8<T>(row[vecs_per_row + c], u);
    for (int j = 0; j < 8; ++j) g[j] = Silu(g[j]) * u[j];
    reinterpret_cast<uint4*>(out)[v] = Pack8<T>(g);
  }
}

template <typename T>
__global__ void SiluMulScalarKernel(const T* __restrict__ gate_up, T* __restrict__ out, int inter,
                                    int64_t total) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / inter;
    const int c = static_cast<int>(i % inter);
    const T* row = gate_up + r * 2 * inter;
    out[i] = FromFloat<T>(Silu(ToFloat(row[c])) * ToFloat(row[inter + c]));
  }
}

template <typename T>
Status Launch(const void* gate_up, int32_t rows, int32_t inter, void* out, cudaStream_t stream) {
  const bool vec = inter % 8 == 0;
  const int64_t work = int64_t{rows} * (vec ? inter / 8 : inter);
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((work + threads - 1) / threads, 65536);
  if (vec) {
    return CudaStatus(
        LaunchDependent(SiluMulVecKernel<T>, blocks, threads, 0, stream,
                        static_cast<const T*>(gate_up), static_cast<T*>(out), inter, work),
        "SiluMulVecKernel");
  } else {
    SiluMulScalarKernel<T><<<blocks, threads, 0, stream>>>(static_cast<const T*>(gate_up),
                                                           static_cast<T*>(out), inter, work);
  }
  return LaunchStatus("SiluMulKernel");
}

}  // namespace

Status SiluMul(DType dtype, const void* gate_up, int32_t rows, int32_t inter, void* out,
               cudaStream_t stream) {
  if (gate_up == nullptr || out == nullptr) {
    return InvalidArgument("SiluMul: gate_up and out must be non-null");
  }
  if (rows < 0 || inter <= 0)
    return InvalidArgument("SiluMul: bad shape rows={} inter={}", rows, inter);
  if (rows == 0) return Status::Ok();
  if (dtype == DType::kF16) return Launch<__half>(gate_up, rows, inter, out, stream);
  return Launch<__nv_bfloat16>(gate_up, rows, inter, out, stream);
}

}  // namespace ite::kernels

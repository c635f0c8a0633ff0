#include "worker/parallel/cuda_host_staging.h"

#include <cuda_runtime_api.h>

namespace ite {

namespace {
Status Copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  cudaError_t err = cudaMemcpyAsync(dst, src, bytes, kind, s);
  if (err == cudaSuccess) err = cudaStreamSynchronize(s);
  if (err != cudaSuccess)
    return Internal("in-process group copy of {} bytes: {}", bytes, cudaGetErrorString(err));
  return Status::Ok();
}
}  // namespace

Status CudaHostStaging::ToHost(const void* src, void* host, size_t bytes, void* stream) const {
  return Copy(host, src, bytes, cudaMemcpyDeviceToHost, stream);
}

Status CudaHostStaging::FromHost(const void* host, void* dst, size_t bytes, void* stream) const {
  return Copy(dst, host, bytes, cudaMemcpyHostToDevice, stream);
}

}  // namespace ite

// Internal helpers of the kernel launchers: CUDA error to Status, launch checks.
#pragma once

#include <cuda_runtime_api.h>

#include "common/status.h"

namespace ite::kernels {

inline Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::Ok();
  return Internal("{}: CUDA error {} ({})", what, cudaGetErrorName(err), cudaGetErrorString(err));
}

// Checks the last launch; every launcher ends with this.
inline Status LaunchStatus(const char* kernel) { return CudaStatus(cudaGetLastError(), kernel); }

}  // namespace ite::kernels

#define ITE_CUDA_RETURN_IF_ERROR(expr) \
  ITE_RETURN_IF_ERROR(::ite::kernels::CudaStatus((expr), #expr))

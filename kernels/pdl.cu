#include <cuda_runtime.h>

#include <cstdlib>
#include <mutex>

#include "pdl.cuh"

namespace ite::kernels {

bool DependentLaunchEnabled() {
  constexpr int kMaxDevices = 64;
  static std::once_flag once;
  static bool capable[kMaxDevices] = {};
  static bool disabled = false;
  std::call_once(once, [] {
    const char* off = std::getenv("ITE_NO_PDL");
    disabled = off != nullptr && off[0] != '\0' && off[0] != '0';
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      n = 0;
    }
    for (int d = 0; d < n && d < kMaxDevices; ++d) {
      int major = 0;
      capable[d] =
          cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, d) == cudaSuccess &&
          major >= 9;
    }
    cudaGetLastError();
  });
  int device = 0;
  if (disabled || cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices)
    return false;
  return capable[device];
}

}  // namespace ite::kernels

#include "device_info.h"

#include <cuda_runtime.h>

#include <mutex>

namespace ite::kernels {

const DeviceInfo& CurrentDevice() {
  constexpr int kMaxDevices = 64;
  static std::once_flag once;
  static DeviceInfo info[kMaxDevices + 1];  // the last: a device CUDA cannot name
  std::call_once(once, [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
    for (int d = 0; d < n && d < kMaxDevices; ++d) {
      if (cudaDeviceGetAttribute(&info[d].multiprocessors, cudaDevAttrMultiProcessorCount, d) !=
              cudaSuccess ||
          cudaDeviceGetAttribute(&info[d].major, cudaDevAttrComputeCapabilityMajor, d) !=
              cudaSuccess) {
        info[d] = DeviceInfo{};
      }
    }
    cudaGetLastError();  // a failed query must not surface at the next launch's check
  });
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) {
    cudaGetLastError();
    return info[kMaxDevices];
  }
  return info[device];
}

}  // namespace ite::kernels

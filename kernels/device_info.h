// Facts about a device that launch choices depend on (wave sizes, dependent launches), read from
// CUDA once per device instead of on every eager launch.
#pragma once

namespace ite::kernels {

struct DeviceInfo {
  int multiprocessors = 0;  // 0 where CUDA cannot say (no device)
  int major = 0;            // compute capability
};

// The current device's (cudaGetDevice).
const DeviceInfo& CurrentDevice();

}  // namespace ite::kernels

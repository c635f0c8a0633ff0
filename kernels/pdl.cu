#include <cuda_runtime.h>

#include <cstdlib>

#include "common/env_flag.h"
#include "device_info.h"
#include "pdl.cuh"

namespace ite::kernels {

bool DependentLaunchEnabled() {
  static const bool disabled = EnvFlag("ITE_NO_PDL");
  return !disabled && CurrentDevice().major >= 9;
}

}  // namespace ite::kernels

#include <cuda_runtime.h>

#include <cstdlib>

#include "device_info.h"
#include "pdl.cuh"

namespace ite::kernels {

bool DependentLaunchEnabled() {
  static const bool disabled = [] {
    const char* off = std::getenv("ITE_NO_PDL");
    return off != nullptr && off[0] != '\0' && off[0] != '0';
  }();
  return !disabled && CurrentDevice().major >= 9;
}

}  // namespace ite::kernels

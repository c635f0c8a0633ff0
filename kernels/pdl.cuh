// Programmatic dependent launch (sm_90+): a kernel started with LaunchDependent may begin while
// the kernel before it in the stream still runs (its blocks placed, its prologue run), instead
// of after that kernel has drained. A decode step is ~165 short kernels, so each boundary's
// drain-and-launch gap counts. Each such kernel calls LetDependentsStart() first, and it must call
// WaitForPrerequisites() before it reads anything an earlier kernel writes, and before it writes
// anything at all; the wait returns once the previous kernel has finished and its writes are
// visible. Work that touches only constant data (the weight-streaming products' first weight loads)
// may come before the wait. ITE_NO_PDL=1 in the environment launches everything the ordinary way
// (for measuring).
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace ite::kernels {

__device__ __forceinline__ void WaitForPrerequisites() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel (if launched dependent) be scheduled once every block of this one has
// started; it still waits for this kernel's end before using its results, so where this is
// called changes only when the next kernel's blocks are placed, never what they read.
__device__ __forceinline__ void LetDependentsStart() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether the current device takes dependent launches (compute capability 9.0 and up) and
// ITE_NO_PDL is not set.
bool DependentLaunchEnabled();

template <typename... Params, typename... Args>
cudaError_t LaunchDependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                            cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = DependentLaunchEnabled() ? 1 : 0;
  const cudaError_t err = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
  if (err != cudaSuccess) cudaGetLastError();  // reported here, not by a later launch's check
  return err;
}

}  // namespace ite::kernels

// A kernel for tests of dependent launches: it lets the next kernel start at once, then waits
// `delay_ns` before copying, so the next kernel's blocks certainly run their pre-wait part
// while this one has not yet written.
#include <cuda_runtime.h>

#include "cuda_check.h"
#include "pdl.cuh"
#include "test_util.h"

namespace ite::kernels::testing {
namespace {

__global__ void LateCopyKernel(const uint16_t* src, uint16_t* dst, const int64_t* offsets,
                               int32_t count, int32_t elems, int64_t delay_ns) {
  LetDependentsStart();
  WaitForPrerequisites();
  uint64_t start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    __nanosleep(1000);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (static_cast<int64_t>(now - start) < delay_ns);
  for (int32_t i = 0; i < count; ++i) {
    for (int32_t e = threadIdx.x; e < elems; e += blockDim.x)
      dst[offsets[i] + e] = src[offsets[i] + e];
  }
}

}  // namespace

Status LateCopy16(const void* src, void* dst, const int64_t* offsets, int32_t count, int32_t elems,
                  int64_t delay_ns, cudaStream_t stream) {
  return CudaStatus(LaunchDependent(LateCopyKernel, 1, 128, 0, stream,
                                    static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst),
                                    offsets, count, elems, delay_ns),
                    "LateCopyKernel");
}

}  // namespace ite::kernels::testing

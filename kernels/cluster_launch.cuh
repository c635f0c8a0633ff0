// Launch helpers for kernels that split one row over a thread-block cluster (sm_90+) and reduce
// across it through distributed shared memory. Such kernels are compiled for every architecture
// of the build; their cluster code exists only where ITE_CLUSTER_CODE is 1, and the launcher
// asks ClusterLimit whether the image that runs on the current device has it.
#pragma once

#include <cuda_runtime.h>

#include <atomic>

#include "pdl.cuh"

namespace ite::kernels {

// 1 in the host pass (which only parses device code) and in device code for sm_90 and later.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define ITE_CLUSTER_CODE 0
#else
#define ITE_CLUSTER_CODE 1
#endif

namespace cluster_detail {

// Clears the error a failed query left behind, so the next launch check does not report it.
inline int NoClusters() {
  cudaGetLastError();
  return 0;
}

template <typename Kernel>
int QueryLimit(Kernel kernel, int device, int threads, size_t smem) {
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    return NoClusters();
  }
  if (major < 9) return 0;
  // An image JIT-compiled from PTX older than compute_90 has the cluster code compiled out.
  cudaFuncAttributes attr{};
  if (cudaFuncGetAttributes(&attr, kernel) != cudaSuccess) return NoClusters();
  if (attr.ptxVersion < 90) return 0;
  // Sizes above 8 need the non-portable opt-in; without it the query for 16 fails and 8 is used.
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) !=
      cudaSuccess) {
    NoClusters();
  }
  for (int size = 16; size >= 2; size /= 2) {
    cudaLaunchAttribute cluster{};
    cluster.id = cudaLaunchAttributeClusterDimension;
    cluster.val.clusterDim.x = static_cast<unsigned>(size);
    cluster.val.clusterDim.y = 1;
    cluster.val.clusterDim.z = 1;
    cudaLaunchConfig_t config{};
    config.gridDim = dim3(static_cast<unsigned>(size));
    config.blockDim = dim3(static_cast<unsigned>(threads));
    config.dynamicSmemBytes = smem;
    config.attrs = &cluster;
    config.numAttrs = 1;
    int active = 0;
    if (cudaOccupancyMaxActiveClusters(&active, kernel, &config) != cudaSuccess) {
      NoClusters();
    } else if (active > 0) {
      return size;
    }
  }
  return 0;
}

}  // namespace cluster_detail

// Largest cluster size (16, 8, 4 or 2) with which kKernel launches on the current device at
// `threads` threads per block and `smem` bytes of dynamic shared memory (the kernel's maximum
// already set where it needs more than 48 KB), or 0 where it cannot use clusters. Asked once
// per device and kernel, then cached (a kernel is always launched with the same threads and
// shared memory): the queries cost microseconds. Any thread.
template <auto kKernel>
int ClusterLimit(int threads, size_t smem = 0) {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cached[kMaxDevices];  // limit + 1; 0 until asked
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return cluster_detail::NoClusters();
  if (device >= kMaxDevices) return cluster_detail::QueryLimit(kKernel, device, threads, smem);
  const int hit = cached[device].load(std::memory_order_relaxed);
  if (hit != 0) return hit - 1;
  const int limit = cluster_detail::QueryLimit(kKernel, device, threads, smem);
  cached[device].store(limit + 1, std::memory_order_relaxed);
  return limit;
}

// Launches kernel on `grid` in clusters of `cluster_x` blocks along the grid's x (which it must
// divide); `dependent`: as LaunchDependent (pdl.cuh), and the kernel then follows that header's
// rules for its waits. Returns the launch error, already cleared from the sticky state.
template <typename... Params, typename... Args>
cudaError_t LaunchClustered(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                            int cluster_x, bool dependent, cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attrs[2]{};
  attrs[0].id = cudaLaunchAttributeClusterDimension;
  attrs[0].val.clusterDim.x = static_cast<unsigned>(cluster_x);
  attrs[0].val.clusterDim.y = 1;
  attrs[0].val.clusterDim.z = 1;
  attrs[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attrs[1].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = attrs;
  config.numAttrs = dependent && DependentLaunchEnabled() ? 2 : 1;
  const cudaError_t err = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
  if (err != cudaSuccess) cudaGetLastError();  // reported here, not by a later launch's check
  return err;
}

}  // namespace ite::kernels

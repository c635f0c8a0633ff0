// Owning handles for the CUDA resources of the backend: device and pinned host buffers, events.
// Every CUDA call is checked; failures come back as a Status naming the call.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <utility>

#include "common/status.h"

namespace ite {

inline Status CudaCheck(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::Ok();
  return Internal("{}: CUDA error {} ({})", what, cudaGetErrorName(err), cudaGetErrorString(err));
}
#define ITE_CUDA_TRY(expr) ITE_RETURN_IF_ERROR(::ite::CudaCheck((expr), #expr))

// Bytes from one of CUDA's allocators, freed on destruction. Memory: a traits type with
// Alloc, Free and Where (what a failure names).
template <typename Memory>
class CudaBuffer {
 public:
  CudaBuffer() = default;
  CudaBuffer(CudaBuffer&& o) noexcept { *this = std::move(o); }
  CudaBuffer& operator=(CudaBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  ~CudaBuffer() { Release(); }

  // Allocates `bytes` (a failure names `what` and the bytes asked for).
  Status Allocate(size_t bytes, const char* what) {
    Release();
    if (bytes == 0) return Status::Ok();
    const cudaError_t err = Memory::Alloc(&ptr_, bytes);
    if (err != cudaSuccess) {
      ptr_ = nullptr;
      cudaGetLastError();  // clear it: an allocation failure is not sticky
      return ResourceExhausted("{}: cannot allocate {} bytes {}: {}", what, bytes, Memory::Where(),
                               cudaGetErrorString(err));
    }
    bytes_ = bytes;
    return Status::Ok();
  }
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void Release() {
    if (ptr_ != nullptr) Memory::Free(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

struct GpuMemory {
  static cudaError_t Alloc(void** p, size_t n) { return cudaMalloc(p, n); }
  static void Free(void* p) { cudaFree(p); }
  static std::string Where() {
    size_t free = 0, total = 0;
    cudaMemGetInfo(&free, &total);
    return fmt::format("on the GPU ({} free of {})", free, total);
  }
};

// Page-locked host memory, for asynchronous copies.
struct PinnedMemory {
  static cudaError_t Alloc(void** p, size_t n) { return cudaHostAlloc(p, n, cudaHostAllocDefault); }
  static void Free(void* p) { cudaFreeHost(p); }
  static std::string Where() { return "of pinned host memory"; }
};

using DeviceBuffer = CudaBuffer<GpuMemory>;
using PinnedBuffer = CudaBuffer<PinnedMemory>;

}  // namespace ite

// Owning handles for the CUDA resources of the backend: device and pinned host buffers, events.
// Every CUDA call is checked; failures come back as a Status naming the call.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "common/status.h"

namespace ite {

inline Status CudaCheck(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::Ok();
  return Internal("{}: CUDA error {} ({})", what, cudaGetErrorName(err), cudaGetErrorString(err));
}
#define ITE_CUDA_TRY(expr) ITE_RETURN_IF_ERROR(::ite::CudaCheck((expr), #expr))

// cudaMalloc'd bytes, freed on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  // Allocates `bytes` (a failure names `what` and the bytes asked for).
  Status Allocate(size_t bytes, const char* what) {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
    if (bytes == 0) return Status::Ok();
    cudaError_t err = cudaMalloc(&ptr_, bytes);
    if (err != cudaSuccess) {
      ptr_ = nullptr;
      cudaGetLastError();  // clear it: an allocation failure is not sticky
      size_t free = 0, total = 0;
      cudaMemGetInfo(&free, &total);
      return ResourceExhausted("{}: cannot allocate {} bytes on the GPU ({} free of {}): {}", what,
                               bytes, free, total, cudaGetErrorString(err));
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
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Page-locked host memory (cudaHostAlloc), for asynchronous copies.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(PinnedBuffer&& o) noexcept { *this = std::move(o); }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  ~PinnedBuffer() {
    if (ptr_ != nullptr) cudaFreeHost(ptr_);
  }
  Status Allocate(size_t bytes, const char* what) {
    if (ptr_ != nullptr) cudaFreeHost(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
    if (bytes == 0) return Status::Ok();
    cudaError_t err = cudaHostAlloc(&ptr_, bytes, cudaHostAllocDefault);
    if (err != cudaSuccess) {
      ptr_ = nullptr;
      cudaGetLastError();
      return ResourceExhausted("{}: cannot allocate {} bytes of pinned host memory: {}", what,
                               bytes, cudaGetErrorString(err));
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
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace ite

// Helpers for the kernel tests: GPU presence, host<->device buffers in f16/bf16, poisoning,
// fresh random inputs, and the relative-error metric ||out - ref|| / ||ref||.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "ite/kernels/kernel_types.h"

namespace ite::kernels::testing {

// Empty when a usable GPU exists; otherwise the reason to skip.
std::string NoGpuReason();

#define ITE_SKIP_WITHOUT_GPU()                                                  \
  do {                                                                          \
    const std::string _why = ::ite::kernels::testing::NoGpuReason();            \
    if (!_why.empty()) GTEST_SKIP() << "skipped, no usable CUDA GPU: " << _why; \
  } while (0)

#define ITE_CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

// 16-bit storage of a float in dtype, and back (round to nearest even).
uint16_t ToBits(float x, DType dtype);
float FromBits(uint16_t bits, DType dtype);
// Rounds every element to dtype precision (what the kernel will see).
void RoundTo(std::vector<float>& v, DType dtype);

std::vector<float> RandomVector(size_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f);

// A device allocation freed on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }
  // 0xFF in every byte: NaN in f16, bf16 and f32, -1 in int32.
  void Poison();

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Uploads floats stored as dtype (16-bit).
DeviceBuffer Upload16(const std::vector<float>& v, DType dtype);
// Downloads n 16-bit values of dtype as floats.
std::vector<float> Download16(const DeviceBuffer& b, size_t n, DType dtype);

template <typename T>
DeviceBuffer UploadRaw(const std::vector<T>& v) {
  DeviceBuffer b(v.size() * sizeof(T));
  if (!v.empty()) cudaMemcpy(b.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  return b;
}
template <typename T>
std::vector<T> DownloadRaw(const DeviceBuffer& b, size_t n) {
  std::vector<T> v(n);
  if (n) cudaMemcpy(v.data(), b.get(), n * sizeof(T), cudaMemcpyDeviceToHost);
  return v;
}

double RelError(const std::vector<float>& out, const std::vector<float>& ref);
size_t CountNonFinite(const std::vector<float>& v);
// A paged KV cache with random contents at the positions of sequences of lengths `kv_lens`,
// whose blocks are handed out in random order; every other slot holds NaN, so a kernel that
// reads outside a sequence shows NaN. Host copies are fp32 (already rounded to dtype).
struct RandomPagedCache {
  std::vector<float> k, v;  // [num_blocks, block_size, num_kv_heads, head_dim]
  DeviceBuffer dk, dv;
  std::vector<int32_t> block_tables;  // [batch, max_blocks_per_seq], -1 past the end
  int32_t max_blocks_per_seq = 0;
  int32_t num_blocks = 0, block_size = 0, num_kv_heads = 0, head_dim = 0;
  DType dtype = DType::kBF16;

  PagedKvCache View() const;
};
RandomPagedCache MakeRandomPagedCache(const std::vector<int32_t>& kv_lens, int32_t block_size,
                                      int32_t num_kv_heads, int32_t head_dim, DType dtype,
                                      std::mt19937& rng);

// After `delay_ns`, dst[offsets[i] + e] = src[offsets[i] + e] for i < count, e < elems (16-bit
// elements), as a dependent launch that lets the next kernel start before it has waited: the
// next kernel's reads before its own wait then see dst unwritten.
Status LateCopy16(const void* src, void* dst, const int64_t* offsets, int32_t count, int32_t elems,
                  int64_t delay_ns, cudaStream_t stream);

// Relative-error bound for outputs stored in dtype, computed in fp32 from dtype inputs.
double Tolerance(DType dtype);

}  // namespace ite::kernels::testing

#include "test_util.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

namespace ite::kernels::testing {

std::string NoGpuReason() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  if (count == 0) return "cudaGetDeviceCount returned 0";
  return "";
}

uint16_t ToBits(float x, DType dtype) {
  if (dtype == DType::kF16) return __half_raw(__float2half_rn(x)).x;
  return __nv_bfloat16_raw(__float2bfloat16_rn(x)).x;
}

float FromBits(uint16_t bits, DType dtype) {
  if (dtype == DType::kF16) {
    __half_raw raw;
    raw.x = bits;
    return __half2float(__half(raw));
  }
  __nv_bfloat16_raw raw;
  raw.x = bits;
  return __bfloat162float(__nv_bfloat16(raw));
}

void RoundTo(std::vector<float>& v, DType dtype) {
  for (float& x : v) x = FromBits(ToBits(x, dtype), dtype);
}

std::vector<float> RandomVector(size_t n, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes > 0 && cudaMalloc(&ptr_, bytes) != cudaSuccess) {
    ptr_ = nullptr;
    bytes_ = 0;
    ADD_FAILURE() << "cudaMalloc of " << bytes << " bytes failed";
  }
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::Poison() {
  if (ptr_) cudaMemset(ptr_, 0xFF, bytes_);
}

DeviceBuffer Upload16(const std::vector<float>& v, DType dtype) {
  std::vector<uint16_t> bits(v.size());
  for (size_t i = 0; i < v.size(); ++i) bits[i] = ToBits(v[i], dtype);
  return UploadRaw(bits);
}

std::vector<float> Download16(const DeviceBuffer& b, size_t n, DType dtype) {
  std::vector<uint16_t> bits = DownloadRaw<uint16_t>(b, n);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = FromBits(bits[i], dtype);
  return v;
}

double RelError(const std::vector<float>& out, const std::vector<float>& ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < out.size() && i < ref.size(); ++i) {
    const double d = double(out[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  if (out.size() != ref.size()) return INFINITY;
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

size_t CountNonFinite(const std::vector<float>& v) {
  size_t n = 0;
  for (float x : v) n += !std::isfinite(x);
  return n;
}

PagedKvCache RandomPagedCache::View() const {
  PagedKvCache c;
  c.k = dk.get();
  c.v = dv.get();
  c.dtype = dtype;
  c.num_blocks = num_blocks;
  c.block_size = block_size;
  c.num_kv_heads = num_kv_heads;
  c.head_dim = head_dim;
  return c;
}

RandomPagedCache MakeRandomPagedCache(const std::vector<int32_t>& kv_lens, int32_t block_size,
                                      int32_t num_kv_heads, int32_t head_dim, DType dtype,
                                      std::mt19937& rng) {
  RandomPagedCache c;
  c.block_size = block_size;
  c.num_kv_heads = num_kv_heads;
  c.head_dim = head_dim;
  c.dtype = dtype;
  int32_t total = 0;
  for (int32_t len : kv_lens) {
    const int32_t nb = (len + block_size - 1) / block_size;
    c.max_blocks_per_seq = std::max(c.max_blocks_per_seq, nb);
    total += nb;
  }
  c.max_blocks_per_seq = std::max(c.max_blocks_per_seq, 1);
  c.num_blocks = total + 3;  // a few blocks nobody owns
  std::vector<int32_t> order(c.num_blocks);
  for (int32_t i = 0; i < c.num_blocks; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  const size_t slot = size_t(num_kv_heads) * head_dim;
  const size_t elems = size_t(c.num_blocks) * block_size * slot;
  c.k.assign(elems, NAN);
  c.v.assign(elems, NAN);
  c.block_tables.assign(kv_lens.size() * c.max_blocks_per_seq, -1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  size_t next = 0;
  for (size_t b = 0; b < kv_lens.size(); ++b) {
    const int32_t nb = (kv_lens[b] + block_size - 1) / block_size;
    for (int32_t i = 0; i < nb; ++i) c.block_tables[b * c.max_blocks_per_seq + i] = order[next++];
    for (int32_t p = 0; p < kv_lens[b]; ++p) {
      const size_t base =
          (size_t(c.block_tables[b * c.max_blocks_per_seq + p / block_size]) * block_size +
           p % block_size) *
          slot;
      for (size_t i = 0; i < slot; ++i) {
        c.k[base + i] = FromBits(ToBits(dist(rng), dtype), dtype);
        c.v[base + i] = FromBits(ToBits(dist(rng), dtype), dtype);
      }
    }
  }
  c.dk = Upload16(c.k, dtype);
  c.dv = Upload16(c.v, dtype);
  return c;
}

double Tolerance(DType dtype) { return dtype == DType::kF16 ? 2e-3 : 1.2e-2; }

}  // namespace ite::kernels::testing

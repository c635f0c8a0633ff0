// The reference kernels: plain integer loops, the arithmetic the vector kernels must match.
#include <immintrin.h>

#include <cstring>

#include "worker/backend/cpu/quant_kernels.h"

namespace ite::cpu {
namespace {

float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

float DotUnpacked(const UnpackedRow& w, const Q8Row& x, int64_t cols) {
  float acc = 0.0f;
  for (int64_t b = 0; b < cols / kQ8Block; ++b) {
    for (int g = 0; g < 2; ++g) {
      int32_t sum = 0;
      for (int i = 0; i < 16; ++i) {
        const int64_t e = b * kQ8Block + 16 * g + i;
        sum += static_cast<int32_t>(w.q[e]) * x.q[e];
      }
      acc += w.scale[2 * b + g] * x.d[b] * static_cast<float>(sum);
    }
    acc += w.offset[b] * x.s[b];
  }
  return acc;
}

// Q4_0 and Q4_1 read nibbles as 0..15; Q4_0's -8 is folded into an offset of -8 d.
template <bool kHasMin>
float DotQ4(const uint8_t* w, const Q8Row& x, int64_t cols) {
  constexpr int kBytes = kHasMin ? 20 : 18;
  float acc = 0.0f;
  for (int64_t b = 0; b < cols / kQ8Block; ++b) {
    const uint8_t* blk = w + b * kBytes;
    const uint8_t* qs = blk + (kHasMin ? 4 : 2);
    const int8_t* xq = x.q + b * kQ8Block;
    int32_t sum = 0;
    for (int j = 0; j < 16; ++j) sum += (qs[j] & 0xF) * xq[j] + (qs[j] >> 4) * xq[j + 16];
    const float d = Half(blk);
    const float m = kHasMin ? Half(blk + 2) : -8.0f * d;
    acc += d * x.d[b] * static_cast<float>(sum) + m * x.s[b];
  }
  return acc;
}

float DotQ8_0(const uint8_t* w, const Q8Row& x, int64_t cols) {
  float acc = 0.0f;
  for (int64_t b = 0; b < cols / kQ8Block; ++b) {
    const uint8_t* blk = w + b * 34;
    const auto* qs = reinterpret_cast<const int8_t*>(blk + 2);
    int32_t sum = 0;
    for (int j = 0; j < 32; ++j) sum += static_cast<int32_t>(qs[j]) * x.q[b * kQ8Block + j];
    acc += Half(blk) * x.d[b] * static_cast<float>(sum);
  }
  return acc;
}

}  // namespace

const QuantKernels kQuantKernelsScalar = {DotUnpacked, DotQ4<false>, DotQ4<true>, DotQ8_0};

}  // namespace ite::cpu

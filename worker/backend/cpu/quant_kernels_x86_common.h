// Helpers the x86 kernels share (AVX2 + F16C and up), included by each vector kernel file, which
// is compiled for its own instruction set; internal linkage, so the copies never meet at link
// time.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace ite::cpu {
namespace {

// The f16 at p (unaligned, as in ggml blocks).
inline float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// Eight bytes 0..255 as fp32, times f, into out[0..8).
inline void StoreScaled(uint64_t bytes, float f, float* out) {
  const __m256i wide = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<int64_t>(bytes)));
  _mm256_storeu_ps(out, _mm256_mul_ps(_mm256_cvtepi32_ps(wide), _mm256_set1_ps(f)));
}

}  // namespace
}  // namespace ite::cpu

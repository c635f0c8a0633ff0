// The AVX2-width kernels, written once over `Isa::Dot4(u8, s8)`: per 32-bit lane, the sum of
// four products of an unsigned and a signed byte. Included by quant_kernels_avx2.cc and
// quant_kernels_vnni.cc, each compiled for its instruction set; everything here has internal
// linkage so the two copies (different instructions, same names) never meet at link time.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "worker/backend/cpu/quant_kernels.h"

namespace ite::cpu {
namespace {

inline float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 32 stored nibbles (16 bytes: element j low, j + 16 high) as 32 bytes in element order.
inline __m256i Nibbles(const uint8_t* qs) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(v, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
  return _mm256_set_m128i(hi, lo);
}

// Signed x signed through the unsigned x signed product: |w| * (x with w's sign). |w| <= 128 and
// |x| <= 127, so no pair sum saturates in VPMADDUBSW.
template <class Isa>
inline __m256i DotSigned(__m256i w, __m256i x) {
  return Isa::Dot4(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

template <class Isa>
float DotUnpacked(const UnpackedRow& w, const Q8Row& x, int64_t cols) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  float offsets = 0.0f;
  const int64_t nb = cols / kQ8Block;
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.q + b * kQ8Block));
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + b * kQ8Block));
    // Lanes 0-3 hold elements 0-15 (scale 2b), lanes 4-7 elements 16-31 (scale 2b + 1).
    const __m256 sums = _mm256_cvtepi32_ps(DotSigned<Isa>(wq, xq));
    const __m256 scale =
        _mm256_mul_ps(_mm256_set_m128(_mm_set1_ps(w.scale[2 * b + 1]), _mm_set1_ps(w.scale[2 * b])),
                      _mm256_set1_ps(x.d[b]));
    if (b & 1) {
      acc1 = _mm256_fmadd_ps(sums, scale, acc1);
    } else {
      acc0 = _mm256_fmadd_ps(sums, scale, acc0);
    }
    offsets += w.offset[b] * x.s[b];
  }
  return HorizontalSum(_mm256_add_ps(acc0, acc1)) + offsets;
}

template <class Isa, bool kHasMin>
float DotQ4(const uint8_t* w, const Q8Row& x, int64_t cols) {
  constexpr int kBytes = kHasMin ? 20 : 18;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  float offsets = 0.0f;
  const int64_t nb = cols / kQ8Block;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = w + b * kBytes;
    const __m256i wq = Nibbles(blk + (kHasMin ? 4 : 2));
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + b * kQ8Block));
    const __m256 sums = _mm256_cvtepi32_ps(Isa::Dot4(wq, xq));
    const float d = HalfAt(blk);
    const __m256 scale = _mm256_set1_ps(d * x.d[b]);
    if (b & 1) {
      acc1 = _mm256_fmadd_ps(sums, scale, acc1);
    } else {
      acc0 = _mm256_fmadd_ps(sums, scale, acc0);
    }
    // Q4_0 stores q + 8: its -8 d per element is an offset like Q4_1's m.
    offsets += (kHasMin ? HalfAt(blk + 2) : -8.0f * d) * x.s[b];
  }
  return HorizontalSum(_mm256_add_ps(acc0, acc1)) + offsets;
}

template <class Isa>
float DotQ8_0(const uint8_t* w, const Q8Row& x, int64_t cols) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  const int64_t nb = cols / kQ8Block;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = w + b * 34;
    const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + b * kQ8Block));
    const __m256 sums = _mm256_cvtepi32_ps(DotSigned<Isa>(wq, xq));
    const __m256 scale = _mm256_set1_ps(HalfAt(blk) * x.d[b]);
    if (b & 1) {
      acc1 = _mm256_fmadd_ps(sums, scale, acc1);
    } else {
      acc0 = _mm256_fmadd_ps(sums, scale, acc0);
    }
  }
  return HorizontalSum(_mm256_add_ps(acc0, acc1));
}

template <class Isa>
constexpr QuantKernels MakeKernels() {
  return {DotUnpacked<Isa>, DotQ4<Isa, false>, DotQ4<Isa, true>, DotQ8_0<Isa>};
}

}  // namespace
}  // namespace ite::cpu

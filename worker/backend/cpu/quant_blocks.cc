#include "worker/backend/cpu/quant_blocks.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "common/check.h"

namespace ite::cpu {

float BlockHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

namespace {

// The decoders below read the same ggml layouts as worker/model/dequantize.cc but produce the
// kernels' int8 + scale form; they are kept apart on purpose, so that the tests compare the
// kernels with a decoder written independently.

inline __m256i Load32(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
inline void Store32(int8_t* p, __m256i v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
// Bit `bit` of each of the 32 bytes at p, moved to bit `to` (per byte: the 16-bit shifts carry
// bits across byte boundaries only into bits the mask clears).
inline __m256i BitsOf(__m256i bytes, int bit, int mask, int to) {
  const __m256i b = _mm256_and_si256(_mm256_srli_epi16(bytes, bit), _mm256_set1_epi8(mask));
  return _mm256_slli_epi16(b, to);
}

// Q4_0 {d; qs[16]} / Q4_1 {d; m; qs[16]}: element j in the low nibble of byte j, element j + 16
// in its high nibble.
void Unpack4(const uint8_t* b, bool has_min, int8_t* q, float* scale, float* offset) {
  const float d = BlockHalf(b);
  const uint8_t* qs = b + (has_min ? 4 : 2);
  const int bias = has_min ? 0 : 8;
  for (int j = 0; j < 16; ++j) {
    q[j] = static_cast<int8_t>((qs[j] & 0xF) - bias);
    q[j + 16] = static_cast<int8_t>((qs[j] >> 4) - bias);
  }
  scale[0] = scale[1] = d;
  *offset = has_min ? BlockHalf(b + 2) : 0.0f;
}

// Q5_0 {d; qh[4]; qs[16]} / Q5_1 {d; m; qh[4]; qs[16]}: bit j of the u32 qh is element j's fifth.
// Vectorised: byte j of a 32-byte vector takes qh's byte j / 8, keeps bit j % 8 and turns it
// into 0x10, next to the nibbles in element order.
void Unpack5(const uint8_t* b, bool has_min, int8_t* q, float* scale, float* offset) {
  const float d = BlockHalf(b);
  const uint8_t* p = b + (has_min ? 4 : 2);
  uint32_t qh;
  std::memcpy(&qh, p, 4);
  const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 4));
  const __m128i low4 = _mm_set1_epi8(0x0F);
  const __m256i nibbles =
      _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), low4), _mm_and_si128(qs, low4));
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int32_t>(qh)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i fifth = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit),
                                         _mm256_set1_epi8(0x10));
  const __m256i v = _mm256_or_si256(nibbles, fifth);
  Store32(q, has_min ? v : _mm256_sub_epi8(v, _mm256_set1_epi8(16)));
  scale[0] = scale[1] = d;
  *offset = has_min ? BlockHalf(b + 2) : 0.0f;
}

void Unpack8(const uint8_t* b, int8_t* q, float* scale, float* offset) {
  std::memcpy(q, b + 2, 32);
  scale[0] = scale[1] = BlockHalf(b);
  *offset = 0.0f;
}

// Six-bit (scale, min) pair j of the 12 packed bytes of Q4_K / Q5_K.
void KScaleMin(int j, const uint8_t* s, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q4_K {d; dmin; scales[12]; qs[128]} and Q5_K {d; dmin; scales[12]; qh[32]; qs[128]}: 256
// elements in 4 chunks of 64; chunk c's first 32 elements are the low nibbles of qs[32c..], the
// next 32 the high nibbles; Q5_K adds bit 2c (2c + 1) of qh[l] as the fifth bit.
void UnpackK45(const uint8_t* b, bool five, int8_t* q, float* scale, float* offset) {
  const float d = BlockHalf(b), dmin = BlockHalf(b + 2);
  const uint8_t* scales = b + 4;
  const __m256i qh = Load32(b + 16);
  const uint8_t* qs = b + (five ? 48 : 16);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int c = 0; c < 4; ++c) {
    const __m256i v = Load32(qs + 32 * c);
    __m256i lo = _mm256_and_si256(v, low4);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    if (five) {
      lo = _mm256_or_si256(lo, BitsOf(qh, 2 * c, 1, 4));
      hi = _mm256_or_si256(hi, BitsOf(qh, 2 * c + 1, 1, 4));
    }
    Store32(q + 64 * c, lo);
    Store32(q + 64 * c + 32, hi);
    for (int half = 0; half < 2; ++half) {
      const int sub = 2 * c + half;
      int sc, m;
      KScaleMin(sub, scales, &sc, &m);
      scale[2 * sub] = scale[2 * sub + 1] = d * static_cast<float>(sc);
      offset[sub] = -dmin * static_cast<float>(m);
    }
  }
}

// Q6_K {ql[128]; qh[64]; scales[16] int8; d}: two halves of 128; in half h element l + 32k has
// low bits from ql[64h + l + 32(k & 1)] (low nibble for k < 2), top bits from qh[32h + l] bits
// 2k..2k+1, and scale 8h + 2k + l / 16 (the 16-element group it lies in); value
// d * scale * (q - 32).
void UnpackQ6K(const uint8_t* b, int8_t* q, float* scale, float* offset) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = BlockHalf(b + 208);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i bias = _mm256_set1_epi8(32);
  for (int h = 0; h < 2; ++h) {
    const __m256i high = Load32(qh + 32 * h);
    for (int k = 0; k < 4; ++k) {
      const __m256i lo_bytes = Load32(ql + 64 * h + 32 * (k & 1));
      const __m256i low = k < 2 ? _mm256_and_si256(lo_bytes, low4)
                                : _mm256_and_si256(_mm256_srli_epi16(lo_bytes, 4), low4);
      const __m256i v = _mm256_or_si256(low, BitsOf(high, 2 * k, 3, 4));
      Store32(q + 128 * h + 32 * k, _mm256_sub_epi8(v, bias));
    }
  }
  for (int g = 0; g < 16; ++g) scale[g] = d * static_cast<float>(sc[g]);
  for (int g = 0; g < 8; ++g) offset[g] = 0.0f;
}

}  // namespace

void QuantizeQ8Rows(const float* x, int64_t rows, int64_t cols, Q8Rows* out) {
  ITE_CHECK(cols % kQ8Block == 0, "QuantizeQ8Rows: {} columns", cols);
  const int64_t nb = cols / kQ8Block;
  out->rows = rows;
  out->cols = cols;
  out->q.resize(static_cast<size_t>(rows * cols));
  out->d.resize(static_cast<size_t>(rows * nb));
  out->s.resize(out->d.size());
  for (int64_t b = 0; b < rows * nb; ++b) {
    const float* v = x + b * kQ8Block;
    float amax = 0.0f;
    for (int i = 0; i < kQ8Block; ++i) amax = std::max(amax, std::fabs(v[i]));
    const float d = amax / 127.0f;
    const float inv = d > 0.0f ? 1.0f / d : 0.0f;
    int8_t* q = out->q.data() + b * kQ8Block;
    int sum = 0;
    for (int i = 0; i < kQ8Block; ++i) {
      q[i] = static_cast<int8_t>(std::lrintf(v[i] * inv));
      sum += q[i];
    }
    out->d[b] = d;
    out->s[b] = d * static_cast<float>(sum);
  }
}

bool UnpackSupported(DType dtype) {
  switch (dtype) {
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kQ8_0:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      return true;
    default:
      return false;
  }
}

void UnpackRow(DType dtype, const uint8_t* src, int64_t cols, UnpackedRow out) {
  const int64_t block = DTypeBlockSize(dtype);
  ITE_CHECK(UnpackSupported(dtype) && cols % block == 0, "UnpackRow: {} row of {}",
            DTypeName(dtype), cols);
  const size_t bytes = DTypeBlockBytes(dtype);
  for (int64_t i = 0; i < cols / block; ++i) {
    const uint8_t* b = src + i * bytes;
    int8_t* q = out.q + i * block;
    float* scale = out.scale + i * block / 16;
    float* offset = out.offset + i * block / 32;
    switch (dtype) {
      case DType::kQ4_0:
        Unpack4(b, false, q, scale, offset);
        break;
      case DType::kQ4_1:
        Unpack4(b, true, q, scale, offset);
        break;
      case DType::kQ5_0:
        Unpack5(b, false, q, scale, offset);
        break;
      case DType::kQ5_1:
        Unpack5(b, true, q, scale, offset);
        break;
      case DType::kQ8_0:
        Unpack8(b, q, scale, offset);
        break;
      case DType::kQ4_K:
        UnpackK45(b, false, q, scale, offset);
        break;
      case DType::kQ5_K:
        UnpackK45(b, true, q, scale, offset);
        break;
      case DType::kQ6_K:
        UnpackQ6K(b, q, scale, offset);
        break;
      default:
        break;
    }
  }
}

}  // namespace ite::cpu

#include "worker/model/dequantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/check.h"

namespace ite {

namespace {

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

float LoadHalf(const uint8_t* p) { return HalfToFloat(LoadU16(p)); }

// 32-element blocks: Q4_0 {d; qs[16]}, Q4_1 {d; m; qs[16]}. Byte j holds element j in its low
// nibble and element j + 16 in its high nibble.
void DequantQ4(const uint8_t* b, float* y, bool has_min) {
  const float d = LoadHalf(b);
  const float m = has_min ? LoadHalf(b + 2) : 0.0f;
  const uint8_t* qs = b + (has_min ? 4 : 2);
  const int offset = has_min ? 0 : 8;  // Q4_0 is symmetric around 8
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((qs[j] & 0xF) - offset) * d + m;
    y[j + 16] = static_cast<float>((qs[j] >> 4) - offset) * d + m;
  }
}

// Q5_0 {d; qh[4]; qs[16]}, Q5_1 {d; m; qh[4]; qs[16]}: the fifth bit of element j is bit j of
// the little-endian u32 qh.
void DequantQ5(const uint8_t* b, float* y, bool has_min) {
  const float d = LoadHalf(b);
  const float m = has_min ? LoadHalf(b + 2) : 0.0f;
  const uint8_t* p = b + (has_min ? 4 : 2);
  uint32_t qh;
  std::memcpy(&qh, p, 4);
  const uint8_t* qs = p + 4;
  const int offset = has_min ? 0 : 16;
  for (int j = 0; j < 16; ++j) {
    int lo = (qs[j] & 0xF) | (((qh >> j) & 1) << 4);
    int hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = static_cast<float>(lo - offset) * d + m;
    y[j + 16] = static_cast<float>(hi - offset) * d + m;
  }
}

// Q8_0 {d; qs[32] int8}.
void DequantQ8_0(const uint8_t* b, float* y) {
  const float d = LoadHalf(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(qs[j]) * d;
}

// The 12 scale bytes of Q4_K/Q5_K pack eight 6-bit (scale, min) pairs, one per 32 elements:
// pairs 0-3 in the low 6 bits of bytes 0-3 / 4-7; pairs 4-7 take their low 4 bits from bytes
// 8-11 and their top 2 bits from the spare high bits of bytes 0-3 / 4-7.
void KScaleMin(int j, const uint8_t* s, int* scale, int* min) {
  if (j < 4) {
    *scale = s[j] & 63;
    *min = s[j + 4] & 63;
  } else {
    *scale = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q4_K {d; dmin; scales[12]; qs[128]}: 256 elements in 4 chunks of 64; chunk c uses bytes
// qs[32c .. 32c+32), low nibbles for its first 32 elements (sub-block 2c), high for the rest.
// value = d * scale * q - dmin * min.
void DequantQ4_K(const uint8_t* b, float* y) {
  const float d = LoadHalf(b);
  const float dmin = LoadHalf(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int c = 0; c < 4; ++c) {
    int sc0, m0, sc1, m1;
    KScaleMin(2 * c, scales, &sc0, &m0);
    KScaleMin(2 * c + 1, scales, &sc1, &m1);
    const uint8_t* q = qs + 32 * c;
    float* out = y + 64 * c;
    for (int l = 0; l < 32; ++l) {
      out[l] = d * sc0 * (q[l] & 0xF) - dmin * m0;
      out[l + 32] = d * sc1 * (q[l] >> 4) - dmin * m1;
    }
  }
}

// Q5_K {d; dmin; scales[12]; qh[32]; qs[128]}: as Q4_K, plus a fifth bit per element from qh:
// chunk c takes bit 2c of qh[l] for its low-nibble half and bit 2c+1 for the high half.
void DequantQ5_K(const uint8_t* b, float* y) {
  const float d = LoadHalf(b);
  const float dmin = LoadHalf(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int c = 0; c < 4; ++c) {
    int sc0, m0, sc1, m1;
    KScaleMin(2 * c, scales, &sc0, &m0);
    KScaleMin(2 * c + 1, scales, &sc1, &m1);
    const uint8_t* q = qs + 32 * c;
    float* out = y + 64 * c;
    for (int l = 0; l < 32; ++l) {
      int lo = (q[l] & 0xF) | (((qh[l] >> (2 * c)) & 1) << 4);
      int hi = (q[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4);
      out[l] = d * sc0 * lo - dmin * m0;
      out[l + 32] = d * sc1 * hi - dmin * m1;
    }
  }
}

// Q6_K {ql[128]; qh[64]; scales[16] int8; d}: two halves of 128 elements. In half h, element
// l + 32k (k = 0..3, l = 0..31) has low 4 bits from ql[64h + l + 32(k&1)] (low nibble for k<2,
// high for k>=2) and top 2 bits from qh[32h + l] bits 2k..2k+1; scale index 8h + k*2 + l/16.
void DequantQ6_K(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = LoadHalf(b + 208);
  for (int h = 0; h < 2; ++h) {
    const uint8_t* hl = ql + 64 * h;
    const uint8_t* hh = qh + 32 * h;
    const int8_t* hs = sc + 8 * h;
    float* out = y + 128 * h;
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      int q0 = ((hl[l] & 0xF) | (((hh[l] >> 0) & 3) << 4)) - 32;
      int q1 = ((hl[l + 32] & 0xF) | (((hh[l] >> 2) & 3) << 4)) - 32;
      int q2 = ((hl[l] >> 4) | (((hh[l] >> 4) & 3) << 4)) - 32;
      int q3 = ((hl[l + 32] >> 4) | (((hh[l] >> 6) & 3) << 4)) - 32;
      out[l] = d * hs[is + 0] * q0;
      out[l + 32] = d * hs[is + 2] * q1;
      out[l + 64] = d * hs[is + 4] * q2;
      out[l + 96] = d * hs[is + 6] * q3;
    }
  }
}

}  // namespace

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000 | (mant << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
  } else if (mant == 0) {
    bits = sign;
  } else {
    // Subnormal half: value = mant * 2^-24; renormalise.
    int e = -1;
    do {
      mant <<= 1;
      ++e;
    } while ((mant & 0x400) == 0);
    bits = sign | static_cast<uint32_t>(112 - e) << 23 | ((mant & 0x3FF) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t abs = x & 0x7FFFFFFF;
  if (abs >= 0x7F800000) {  // inf or nan
    return sign | 0x7C00 | (abs > 0x7F800000 ? 0x200 : 0);
  }
  if (abs >= 0x477FF000) return sign | 0x7C00;  // rounds to >= 65520: overflow to inf
  if (abs < 0x38800000) {
    // Result is subnormal (or zero): value / 2^-24 rounded to nearest even.
    float a;
    std::memcpy(&a, &abs, 4);
    float scaled = a * 16777216.0f;  // exact: power of two
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  // Normal: drop 13 mantissa bits with round-to-nearest-even; carries into the exponent are fine.
  uint32_t rounded = abs + 0xFFF + ((abs >> 13) & 1);
  return sign | static_cast<uint16_t>((rounded - (112u << 23)) >> 13);
}

float Bf16ToFloat(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet nan
  x += 0x7FFF + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

bool DequantizeSupported(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

size_t GgmlRowBytes(GgmlType type, int64_t n) {
  return static_cast<size_t>(n / GgmlBlockSize(type) * GgmlTypeSize(type));
}

void QuantizeRowQ8_0(const float* src, uint8_t* dst, int64_t n) {
  constexpr int64_t kBlock = 32;
  ITE_CHECK(n % kBlock == 0, "Q8_0 row of {} elements", n);
  for (int64_t b = 0; b < n / kBlock; ++b) {
    const float* x = src + b * kBlock;
    uint8_t* out = dst + b * 34;
    float amax = 0.0f;
    for (int64_t i = 0; i < kBlock; ++i) amax = std::max(amax, std::fabs(x[i]));
    // The codes use d before its rounding to f16, as ggml's reference quantizer does, so the
    // bytes match files ggml wrote.
    const float d = amax / 127.0f;
    const float inv = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t h = FloatToHalf(d);
    std::memcpy(out, &h, 2);
    for (int64_t i = 0; i < kBlock; ++i)
      out[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::round(x[i] * inv)));
  }
}

void DequantizeRow(GgmlType type, const uint8_t* src, float* dst, int64_t n) {
  const int64_t block = GgmlBlockSize(type);
  ITE_CHECK(block > 0 && n % block == 0, "{} row of {} elements", GgmlTypeName(type), n);
  const int64_t nb = n / block;
  const size_t bs = static_cast<size_t>(GgmlTypeSize(type));
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = LoadHalf(src + 2 * i);
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFloat(LoadU16(src + 2 * i));
      return;
    case GgmlType::Q8_0:
      for (int64_t i = 0; i < nb; ++i) DequantQ8_0(src + i * bs, dst + i * block);
      return;
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
      for (int64_t i = 0; i < nb; ++i) {
        DequantQ4(src + i * bs, dst + i * block, type == GgmlType::Q4_1);
      }
      return;
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
      for (int64_t i = 0; i < nb; ++i) {
        DequantQ5(src + i * bs, dst + i * block, type == GgmlType::Q5_1);
      }
      return;
    case GgmlType::Q4_K:
      for (int64_t i = 0; i < nb; ++i) DequantQ4_K(src + i * bs, dst + i * block);
      return;
    case GgmlType::Q5_K:
      for (int64_t i = 0; i < nb; ++i) DequantQ5_K(src + i * bs, dst + i * block);
      return;
    case GgmlType::Q6_K:
      for (int64_t i = 0; i < nb; ++i) DequantQ6_K(src + i * bs, dst + i * block);
      return;
    default:
      ITE_CHECK(false, "DequantizeRow: unsupported type {}", GgmlTypeName(type));
  }
}

}  // namespace ite

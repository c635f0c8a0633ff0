// The reference kernels: plain integer loops, one dot product per output, the arithmetic the
// vector kernels must match.
#include "worker/backend/cpu/quant_kernels.h"
#include "worker/backend/cpu/quant_kernels_kscales.h"

namespace ite::cpu {
namespace {

// Q4_0 and Q4_1 read nibbles as 0..15; Q4_0's -8 is folded into an offset of -8 d.
template <bool kHasMin>
float DotQ4(const uint8_t* w, const Q8Rows& x, int64_t t) {
  constexpr int kBytes = kHasMin ? 20 : 18;
  float acc = 0.0f;
  for (int64_t b = 0; b < x.cols / kQ8Block; ++b) {
    const uint8_t* blk = w + b * kBytes;
    const uint8_t* qs = blk + (kHasMin ? 4 : 2);
    const int8_t* xq = x.row_q(t) + b * kQ8Block;
    int32_t sum = 0;
    for (int j = 0; j < 16; ++j) sum += (qs[j] & 0xF) * xq[j] + (qs[j] >> 4) * xq[j + 16];
    const float d = BlockHalf(blk);
    const float m = kHasMin ? BlockHalf(blk + 2) : -8.0f * d;
    acc += d * x.row_d(t)[b] * static_cast<float>(sum) + m * x.row_s(t)[b];
  }
  return acc;
}

// Q5_0 and Q5_1 read the 5-bit codes as 0..31 (bit j of the u32 qh is element j's fifth);
// Q5_0's -16 is folded into an offset of -16 d.
template <bool kHasMin>
float DotQ5(const uint8_t* w, const Q8Rows& x, int64_t t) {
  constexpr int kBytes = kHasMin ? 24 : 22;
  float acc = 0.0f;
  for (int64_t b = 0; b < x.cols / kQ8Block; ++b) {
    const uint8_t* blk = w + b * kBytes;
    const uint8_t* p = blk + (kHasMin ? 4 : 2);
    const uint32_t qh = static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
                        static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
    const uint8_t* qs = p + 4;
    const int8_t* xq = x.row_q(t) + b * kQ8Block;
    int32_t sum = 0;
    for (int j = 0; j < 16; ++j) {
      sum += static_cast<int32_t>((qs[j] & 0xF) | ((qh >> j) & 1) << 4) * xq[j];
      sum += static_cast<int32_t>((qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) * xq[j + 16];
    }
    const float d = BlockHalf(blk);
    const float m = kHasMin ? BlockHalf(blk + 2) : -16.0f * d;
    acc += d * x.row_d(t)[b] * static_cast<float>(sum) + m * x.row_s(t)[b];
  }
  return acc;
}

float DotQ8_0(const uint8_t* w, const Q8Rows& x, int64_t t) {
  float acc = 0.0f;
  for (int64_t b = 0; b < x.cols / kQ8Block; ++b) {
    const uint8_t* blk = w + b * 34;
    const auto* qs = reinterpret_cast<const int8_t*>(blk + 2);
    const int8_t* xq = x.row_q(t) + b * kQ8Block;
    int32_t sum = 0;
    for (int j = 0; j < 32; ++j) sum += static_cast<int32_t>(qs[j]) * xq[j];
    acc += BlockHalf(blk) * x.row_d(t)[b] * static_cast<float>(sum);
  }
  return acc;
}

// Q4_K {d; dmin; scales[12]; qs[128]} / Q5_K {d; dmin; scales[12]; qh[32]; qs[128]}: Q8 block
// k of a super-block reads the low (k even) or high nibbles of qs[32 (k / 2) ..], Q5_K adds bit
// k of qh[l] as the fifth; w = d sc_k q - dmin m_k, so the min is an offset per Q8 block.
template <bool kFive>
float DotK45(const uint8_t* w, const Q8Rows& x, int64_t t) {
  constexpr int kBytes = kFive ? 176 : 144;
  float acc = 0.0f;
  for (int64_t s = 0; s < x.cols / 256; ++s) {
    const uint8_t* blk = w + s * kBytes;
    const float d = BlockHalf(blk), dmin = BlockHalf(blk + 2);
    const KScaleMins sm = UnpackKScales(blk + 4);
    const uint8_t* qh = blk + 16;
    const uint8_t* qs = blk + (kFive ? 48 : 16);
    for (int k = 0; k < 8; ++k) {
      const int64_t b = 8 * s + k;
      const int8_t* xq = x.row_q(t) + b * kQ8Block;
      const uint8_t* q = qs + 32 * (k / 2);
      const int shift = 4 * (k & 1);
      int32_t sum = 0;
      for (int l = 0; l < 32; ++l) {
        int v = (q[l] >> shift) & 0xF;
        if (kFive) v |= ((qh[l] >> k) & 1) << 4;
        sum += v * xq[l];
      }
      const float scale = d * static_cast<float>(KByte(sm.scales, k));
      const float offset = -dmin * static_cast<float>(KByte(sm.mins, k));
      acc += scale * x.row_d(t)[b] * static_cast<float>(sum) + offset * x.row_s(t)[b];
    }
  }
  return acc;
}

// Q6_K {ql[128]; qh[64]; scales[16] int8; d}: Q8 block k = 4h + j of a super-block takes its low
// 4 bits from ql[64h + 32 (j & 1) ..] (low nibbles for j < 2) and its top 2 from bits 2j, 2j + 1
// of qh[32h ..]; w = d sc_g (q - 32) with one scale per 16 elements, so each Q8 block is two
// integer sums.
float DotQ6_K(const uint8_t* w, const Q8Rows& x, int64_t t) {
  float acc = 0.0f;
  for (int64_t s = 0; s < x.cols / 256; ++s) {
    const uint8_t* blk = w + s * 210;
    const auto* sc = reinterpret_cast<const int8_t*>(blk + 192);
    const float d = BlockHalf(blk + 208);
    for (int k = 0; k < 8; ++k) {
      const int h = k / 4, j = k % 4;
      const uint8_t* ql = blk + 64 * h + 32 * (j & 1);
      const uint8_t* qh = blk + 128 + 32 * h;
      const int64_t b = 8 * s + k;
      const int8_t* xq = x.row_q(t) + b * kQ8Block;
      for (int g = 0; g < 2; ++g) {
        int32_t sum = 0;
        for (int l = 16 * g; l < 16 * g + 16; ++l) {
          const int v = ((ql[l] >> (4 * (j / 2))) & 0xF) | ((qh[l] >> (2 * j)) & 3) << 4;
          sum += (v - 32) * xq[l];
        }
        acc += d * static_cast<float>(sc[2 * k + g]) * x.row_d(t)[b] * static_cast<float>(sum);
      }
    }
  }
  return acc;
}

template <class Row, float (*kDot)(const Row&, const Q8Rows&, int64_t)>
void Tile(const Row* rows, int n, const Q8Rows& x, float* out, int64_t out_stride) {
  for (int64_t t = 0; t < x.rows; ++t) {
    for (int i = 0; i < n; ++i) out[t * out_stride + i] = kDot(rows[i], x, t);
  }
}

float DotQ4_0(const uint8_t* const& w, const Q8Rows& x, int64_t t) { return DotQ4<false>(w, x, t); }
float DotQ4_1(const uint8_t* const& w, const Q8Rows& x, int64_t t) { return DotQ4<true>(w, x, t); }
float DotQ5_0(const uint8_t* const& w, const Q8Rows& x, int64_t t) { return DotQ5<false>(w, x, t); }
float DotQ5_1(const uint8_t* const& w, const Q8Rows& x, int64_t t) { return DotQ5<true>(w, x, t); }
float DotQ8_0Ref(const uint8_t* const& w, const Q8Rows& x, int64_t t) { return DotQ8_0(w, x, t); }
float DotQ4_K(const uint8_t* const& w, const Q8Rows& x, int64_t t) {
  return DotK45<false>(w, x, t);
}
float DotQ5_K(const uint8_t* const& w, const Q8Rows& x, int64_t t) { return DotK45<true>(w, x, t); }
float DotQ6_KRef(const uint8_t* const& w, const Q8Rows& x, int64_t t) { return DotQ6_K(w, x, t); }

}  // namespace

const QuantKernels kQuantKernelsScalar = {
    Tile<const uint8_t*, DotQ4_0>, Tile<const uint8_t*, DotQ4_1>,
    Tile<const uint8_t*, DotQ5_0>, Tile<const uint8_t*, DotQ5_1>,
    Tile<const uint8_t*, DotQ8_0Ref>, Tile<const uint8_t*, DotQ4_K>,
    Tile<const uint8_t*, DotQ5_K>, Tile<const uint8_t*, DotQ6_KRef>};

}  // namespace ite::cpu

// The AVX2-width kernels, written once over `Isa::Dot4(u8, s8)`: per 32-bit lane, the sum of
// four products of an unsigned and a signed byte. Included by quant_kernels_avx2.cc and
// quant_kernels_vnni.cc, each compiled for its instruction set; everything here has internal
// linkage so the two copies (different instructions, same names) never meet at link time.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "worker/backend/cpu/quant_kernels.h"
#include "worker/backend/cpu/quant_kernels_kscales.h"
#include "worker/backend/cpu/quant_kernels_x86_common.h"

namespace ite::cpu {
namespace {

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

// Bit j of the 32-bit qh as 0x10 in byte j: byte j takes qh's byte j / 8 (a shuffle within each
// 128-bit lane), keeps bit j % 8, and the comparison turns it into a full byte.
inline __m256i FifthBits(uint32_t qh) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int32_t>(qh)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit),
                          _mm256_set1_epi8(0x10));
}

// Signed x signed through the unsigned x signed product: |w| * (x with w's sign). |w| <= 128 and
// |x| <= 127, so no pair sum saturates in VPMADDUBSW.
template <class Isa>
inline __m256i DotSigned(__m256i w_abs, __m256i w, __m256i x) {
  return Isa::Dot4(w_abs, _mm256_sign_epi8(x, w));
}

// Stored rows stream from memory once per product at batch 1, and the hardware prefetchers alone
// leave a product over a matrix larger than L3 at a quarter of the memory bandwidth (7 of 30
// GB/s on one core here); asking for the bytes this far ahead brings it to ~30. Prefetches past
// the end of a matrix are harmless hints.
constexpr int kPrefetchBytes = 8192;

// How a weight format's block b of a row is read: 32 values in element order (unsigned when
// kSigned is false), their scales per lane (lanes 0-3 are elements 0-15, lanes 4-7 elements
// 16-31) and the block's offset (w = scale * q + offset). The K formats (kSuper) read the same
// three things for block k of a super-block that Load decoded first (below).
struct Q4_0Format {
  using Row = const uint8_t*;
  static constexpr bool kSigned = false;
  static constexpr bool kSuper = false;
  static const uint8_t* Block(Row r, int64_t b) { return r + b * 18; }
  static __m256i Values(Row r, int64_t b) { return Nibbles(Block(r, b) + 2); }
  static __m256 Scale(Row r, int64_t b) { return _mm256_set1_ps(HalfAt(Block(r, b))); }
  static float Offset(Row r, int64_t b) { return -8.0f * HalfAt(Block(r, b)); }  // q is stored + 8
  static void Prefetch(Row r, int64_t b) {
    _mm_prefetch(reinterpret_cast<const char*>(Block(r, b)) + kPrefetchBytes, _MM_HINT_T0);
  }
};

struct Q4_1Format {
  using Row = const uint8_t*;
  static constexpr bool kSigned = false;
  static constexpr bool kSuper = false;
  static const uint8_t* Block(Row r, int64_t b) { return r + b * 20; }
  static __m256i Values(Row r, int64_t b) { return Nibbles(Block(r, b) + 4); }
  static __m256 Scale(Row r, int64_t b) { return _mm256_set1_ps(HalfAt(Block(r, b))); }
  static float Offset(Row r, int64_t b) { return HalfAt(Block(r, b) + 2); }
  static void Prefetch(Row r, int64_t b) {
    _mm_prefetch(reinterpret_cast<const char*>(Block(r, b)) + kPrefetchBytes, _MM_HINT_T0);
  }
};

// Q5_0 {d; qh[4]; qs[16]} / Q5_1 {d; m; qh[4]; qs[16]}: the 5-bit codes 0..31 as unsigned
// values; Q5_0's -16 is folded into an offset of -16 d.
template <int kBytes, bool kHasMin>
struct Q5Format {
  using Row = const uint8_t*;
  static constexpr bool kSigned = false;
  static constexpr bool kSuper = false;
  static constexpr int kQhAt = kHasMin ? 4 : 2;
  static const uint8_t* Block(Row r, int64_t b) { return r + b * kBytes; }
  static __m256i Values(Row r, int64_t b) {
    uint32_t qh;
    std::memcpy(&qh, Block(r, b) + kQhAt, 4);
    return _mm256_or_si256(Nibbles(Block(r, b) + kQhAt + 4), FifthBits(qh));
  }
  static __m256 Scale(Row r, int64_t b) { return _mm256_set1_ps(HalfAt(Block(r, b))); }
  static float Offset(Row r, int64_t b) {
    return kHasMin ? HalfAt(Block(r, b) + 2) : -16.0f * HalfAt(Block(r, b));
  }
  static void Prefetch(Row r, int64_t b) {
    _mm_prefetch(reinterpret_cast<const char*>(Block(r, b)) + kPrefetchBytes, _MM_HINT_T0);
  }
};
using Q5_0Format = Q5Format<22, false>;
using Q5_1Format = Q5Format<24, true>;

struct Q8_0Format {
  using Row = const uint8_t*;
  static constexpr bool kSigned = true;
  static constexpr bool kSuper = false;
  static const uint8_t* Block(Row r, int64_t b) { return r + b * 34; }
  static __m256i Values(Row r, int64_t b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(Block(r, b) + 2));
  }
  static __m256 Scale(Row r, int64_t b) { return _mm256_set1_ps(HalfAt(Block(r, b))); }
  static float Offset(Row, int64_t) { return 0.0f; }
  static void Prefetch(Row r, int64_t b) {
    _mm_prefetch(reinterpret_cast<const char*>(Block(r, b)) + kPrefetchBytes, _MM_HINT_T0);
  }
};

inline __m256i Load32(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// The prefetch of a super-block: one per cache line it may touch (the blocks are not aligned,
// so consecutive super-blocks' prefetches 64 bytes apart cover every line).
template <int kBytes>
inline void PrefetchSuper(const uint8_t* blk) {
  for (int off = 0; off < kBytes; off += 64)
    _mm_prefetch(reinterpret_cast<const char*>(blk) + off + kPrefetchBytes, _MM_HINT_T0);
}

// The K formats: 256-element super-blocks, taken as 8 Q8 blocks. Their scales (6-bit pairs, or
// int8) are decoded to fp32 once per row and super-block by Load, not once per Q8 block and
// token, into a Super that Values / Scale / Offset read block k of (k a constant once the loop
// over k is unrolled).
//
// Q4_K {d; dmin; scales[12]; qs[128]} / Q5_K {d; dmin; scales[12]; qh[32]; qs[128]}: block k
// is the low (k even) or high nibbles of qs[32 (k / 2) ..], Q5_K's fifth bit is bit k of each
// qh byte; w = d sc_k q - dmin m_k, so the min is block k's offset.
template <bool kFive>
struct K45Format {
  using Row = const uint8_t*;
  static constexpr bool kSigned = false;
  static constexpr bool kSuper = true;
  static constexpr int kBytes = kFive ? 176 : 144;
  struct Super {
    const uint8_t* qh;
    const uint8_t* qs;
    float scale[8];
    float offset[8];
  };
  static Super Load(Row r, int64_t s) {
    const uint8_t* blk = r + s * kBytes;
    PrefetchSuper<kBytes>(blk);
    Super out;
    out.qh = blk + 16;
    out.qs = blk + (kFive ? 48 : 16);
    const KScaleMins sm = UnpackKScales(blk + 4);
    StoreScaled(sm.scales, HalfAt(blk), out.scale);
    StoreScaled(sm.mins, -HalfAt(blk + 2), out.offset);
    return out;
  }
  static __m256i Values(const Super& s, int k) {
    const __m256i v = Load32(s.qs + 32 * (k / 2));
    __m256i q = _mm256_and_si256(k & 1 ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(0x0F));
    if constexpr (kFive) {
      // Bit k of each byte to bit 4; the 16-bit shifts move bits across a byte boundary only
      // into positions the mask clears.
      const __m256i h = Load32(s.qh);
      const __m256i fifth = k <= 4 ? _mm256_slli_epi16(h, 4 - k) : _mm256_srli_epi16(h, k - 4);
      q = _mm256_or_si256(q, _mm256_and_si256(fifth, _mm256_set1_epi8(0x10)));
    }
    return q;
  }
  static __m256 Scale(const Super& s, int k) { return _mm256_broadcast_ss(&s.scale[k]); }
  static float Offset(const Super& s, int k) { return s.offset[k]; }
};
using Q4_KFormat = K45Format<false>;
using Q5_KFormat = K45Format<true>;

// Q6_K {ql[128]; qh[64]; scales[16] int8; d}: block k = 4h + j takes its low 4 bits from
// ql[64h + 32 (j & 1) ..] (low nibbles for j < 2) and its top 2 from bits 2j, 2j + 1 of
// qh[32h ..]; w = d sc (q - 32) with a scale per 16 elements. The values are signed (q - 32)
// rather than an offset, since an offset per 16 elements would need activation sums per 16.
struct Q6_KFormat {
  using Row = const uint8_t*;
  static constexpr bool kSigned = true;
  static constexpr bool kSuper = true;
  static constexpr int kBytes = 210;
  struct Super {
    const uint8_t* ql;
    const uint8_t* qh;
    float scale[16];
  };
  static Super Load(Row r, int64_t s) {
    const uint8_t* blk = r + s * kBytes;
    PrefetchSuper<kBytes>(blk);
    Super out;
    out.ql = blk;
    out.qh = blk + 128;
    const __m256 d = _mm256_set1_ps(HalfAt(blk + 208));
    for (int half = 0; half < 2; ++half) {
      const __m128i sc = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 192 + 8 * half));
      _mm256_storeu_ps(out.scale + 8 * half,
                       _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)), d));
    }
    return out;
  }
  static __m256i Values(const Super& s, int k) {
    const int h = k / 4, j = k % 4;
    const __m256i lo_bytes = Load32(s.ql + 64 * h + 32 * (j & 1));
    const __m256i lo =
        _mm256_and_si256(j < 2 ? lo_bytes : _mm256_srli_epi16(lo_bytes, 4), _mm256_set1_epi8(0x0F));
    // Bits 2j, 2j + 1 of each byte to bits 4-5 (the mask clears what crosses bytes).
    const __m256i hi_bytes = Load32(s.qh + 32 * h);
    const __m256i hi = 2 * j <= 4 ? _mm256_slli_epi16(hi_bytes, 4 - 2 * j)
                                  : _mm256_srli_epi16(hi_bytes, 2 * j - 4);
    const __m256i q = _mm256_or_si256(lo, _mm256_and_si256(hi, _mm256_set1_epi8(0x30)));
    return _mm256_sub_epi8(q, _mm256_set1_epi8(32));
  }
  static __m256 Scale(const Super& s, int k) {
    return _mm256_set_m128(_mm_broadcast_ss(&s.scale[2 * k + 1]),
                           _mm_broadcast_ss(&s.scale[2 * k]));
  }
  static float Offset(const Super&, int) { return 0.0f; }
};

// R weight rows x T activation rows: each weight block is decoded once for T tokens and each
// activation block loaded once for R rows. The loops over R and T are unrolled by hand (pragma)
// because GCC -O2 otherwise keeps the accumulator arrays in memory.
template <class Isa, class Fmt, int R, int T>
struct MicroTile {
  const typename Fmt::Row* rows;
  const Q8Rows& x;
  int64_t t0;
  __m256 acc[R][T];
  float offsets[R][T];

  // Block b of the R rows, decoded, against block b of the T tokens.
  void Add(int64_t b, const __m256i* w, const __m256* scale, const float* offset) {
    __m256i w_abs[R];
    if constexpr (Fmt::kSigned) {
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) w_abs[i] = _mm256_sign_epi8(w[i], w[i]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < T; ++j) {
      const int64_t t = t0 + j;
      const __m256i xq =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.row_q(t) + b * kQ8Block));
      const __m256 xd = _mm256_set1_ps(x.row_d(t)[b]);
      const float xs = x.row_s(t)[b];
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) {
        __m256i p;
        if constexpr (Fmt::kSigned) {
          p = DotSigned<Isa>(w_abs[i], w[i], xq);
        } else {
          p = Isa::Dot4(w[i], xq);
        }
        acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(scale[i], xd), acc[i][j]);
        offsets[i][j] += offset[i] * xs;
      }
    }
  }

  void Run(float* out, int64_t out_stride) {
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
#pragma GCC unroll 4
      for (int j = 0; j < T; ++j) {
        acc[i][j] = _mm256_setzero_ps();
        offsets[i][j] = 0.0f;
      }
    }
    const int64_t nb = x.cols / kQ8Block;
    __m256i w[R];
    __m256 scale[R];
    float offset[R];
    if constexpr (Fmt::kSuper) {
      for (int64_t s = 0; s < nb / 8; ++s) {
        typename Fmt::Super sup[R];
#pragma GCC unroll 4
        for (int i = 0; i < R; ++i) sup[i] = Fmt::Load(rows[i], s);
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) {
#pragma GCC unroll 4
          for (int i = 0; i < R; ++i) {
            w[i] = Fmt::Values(sup[i], k);
            scale[i] = Fmt::Scale(sup[i], k);
            offset[i] = Fmt::Offset(sup[i], k);
          }
          Add(8 * s + k, w, scale, offset);
        }
      }
    } else {
      for (int64_t b = 0; b < nb; ++b) {
#pragma GCC unroll 4
        for (int i = 0; i < R; ++i) {
          Fmt::Prefetch(rows[i], b);
          w[i] = Fmt::Values(rows[i], b);
          scale[i] = Fmt::Scale(rows[i], b);
          offset[i] = Fmt::Offset(rows[i], b);
        }
        Add(b, w, scale, offset);
      }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
#pragma GCC unroll 4
      for (int j = 0; j < T; ++j)
        out[(t0 + j) * out_stride + i] = HorizontalSum(acc[i][j]) + offsets[i][j];
    }
  }
};

template <class Isa, class Fmt, int R, int T>
void RunMicroTile(const typename Fmt::Row* rows, const Q8Rows& x, int64_t t0, float* out,
                  int64_t out_stride) {
  MicroTile<Isa, Fmt, R, T> tile{rows, x, t0, {}, {}};
  tile.Run(out, out_stride);
}

template <class Isa, class Fmt, int R>
void RowsTile(const typename Fmt::Row* rows, const Q8Rows& x, float* out, int64_t out_stride) {
  constexpr int kT = 4;
  int64_t t = 0;
  for (; t + kT <= x.rows; t += kT) RunMicroTile<Isa, Fmt, R, kT>(rows, x, t, out, out_stride);
  switch (x.rows - t) {
    case 3:
      RunMicroTile<Isa, Fmt, R, 3>(rows, x, t, out, out_stride);
      break;
    case 2:
      RunMicroTile<Isa, Fmt, R, 2>(rows, x, t, out, out_stride);
      break;
    case 1:
      RunMicroTile<Isa, Fmt, R, 1>(rows, x, t, out, out_stride);
      break;
    default:
      break;
  }
}

template <class Isa, class Fmt>
void Tile(const typename Fmt::Row* rows, int n, const Q8Rows& x, float* out, int64_t out_stride) {
  constexpr int kR = 2;
  int i = 0;
  for (; i + kR <= n; i += kR) RowsTile<Isa, Fmt, kR>(rows + i, x, out + i, out_stride);
  if (i < n) RowsTile<Isa, Fmt, 1>(rows + i, x, out + i, out_stride);
}

template <class Isa>
constexpr QuantKernels MakeKernels() {
  return {Tile<Isa, Q4_0Format>, Tile<Isa, Q4_1Format>, Tile<Isa, Q5_0Format>,
          Tile<Isa, Q5_1Format>, Tile<Isa, Q8_0Format>, Tile<Isa, Q4_KFormat>,
          Tile<Isa, Q5_KFormat>, Tile<Isa, Q6_KFormat>};
}

}  // namespace
}  // namespace ite::cpu

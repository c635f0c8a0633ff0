// The quantized dot products on 512-bit vectors with AVX512-VNNI: two Q8 blocks (64 values) per
// VPDPBUSD, so half the instructions of the AVX2-width kernels per weight byte. Compiled with
// the AVX-512 flags (worker/CMakeLists.txt); only called where the CPU reports AVX512F/BW/VL/DQ
// and AVX512-VNNI (QuantIsaSupported). The arithmetic is that of quant_kernels_x86.h: per 16
// elements an exact int32 sum, scaled in fp32; a row with an odd number of blocks ends with one
// block in the lower half of the vectors and zeros above.
//
// GCC 12 reports the deliberately undefined upper halves of its 256-to-512-bit casts as
// uninitialised once they are inlined (GCC bug 105593, fixed in 13); here every such half is
// overwritten by an insert before it is read. -Wmaybe-uninitialized is GCC's alone: clang (the
// sanitizer builds) warns of an unknown group if it is named there.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cstdint>
#include <cstring>

#include "worker/backend/cpu/quant_kernels.h"
#include "worker/backend/cpu/quant_kernels_kscales.h"
#include "worker/backend/cpu/quant_kernels_x86_common.h"

namespace ite::cpu {
namespace {

inline __m512i Join(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
inline __m512 Join(__m256 lo, __m256 hi) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}
// Lanes 0-7 a, lanes 8-15 b: one scale per block.
inline __m512 PerBlock(float a, float b) { return Join(_mm256_set1_ps(a), _mm256_set1_ps(b)); }

// 16 stored nibble bytes per block (element j low, j + 16 high) of one or two blocks as 64 bytes
// in element order: each block's bytes are broadcast to two 128-bit lanes, the upper one shifted
// by 4, then masked.
template <bool kPair>
inline __m512i Nibbles(const uint8_t* qs0, const uint8_t* qs1) {
  const __m256i a =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs0)));
  const __m256i b =
      kPair ? _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs1)))
            : _mm256_setzero_si256();
  const __m512i shifts = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
  return _mm512_and_si512(_mm512_srlv_epi64(Join(a, b), shifts), _mm512_set1_epi8(0x0F));
}

inline __m512i Load64(const void* p) { return _mm512_loadu_si512(p); }
inline __m256i Load32(const void* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// Same reasoning as the AVX2 kernels: ask for weight bytes this far ahead, since the hardware
// prefetchers alone leave a product over a matrix larger than L3 well under the bandwidth.
constexpr int kPrefetchBytes = 8192;
inline void Prefetch(const uint8_t* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes, _MM_HINT_T0);
}

// How a weight format's blocks b (and b + 1 when kPair) of a row are read: 64 values in element
// order (unsigned when kSigned is false; zeros above the first block when !kPair), their scale per
// 32-bit lane (lanes 4k..4k+3 are elements 16k..16k+15), and each block's offset
// (w = scale * q + offset). The K formats (kSuper, below) read blocks 2p and 2p + 1 of a
// super-block that Load decoded first.
template <int kBytes, int kQsAt, bool kHasMin>
struct Q4Format {
  using Row = const uint8_t*;
  static constexpr bool kSigned = false;
  static constexpr bool kSuper = false;
  template <bool kPair>
  static __m512i Values(Row r, int64_t b) {
    return Nibbles<kPair>(r + b * kBytes + kQsAt, r + (b + 1) * kBytes + kQsAt);
  }
  template <bool kPair>
  static __m512 Scale(Row r, int64_t b) {
    return PerBlock(HalfAt(r + b * kBytes), kPair ? HalfAt(r + (b + 1) * kBytes) : 0.0f);
  }
  static float Offset(Row r, int64_t b) {
    const uint8_t* blk = r + b * kBytes;
    return kHasMin ? HalfAt(blk + 2) : -8.0f * HalfAt(blk);  // Q4_0's q is stored + 8
  }
  static void Fetch(Row r, int64_t b) { Prefetch(r + b * kBytes); }
};
using Q4_0Format = Q4Format<18, 2, false>;
using Q4_1Format = Q4Format<20, 4, true>;

// Q5_0 {d; qh[4]; qs[16]} / Q5_1 {d; m; qh[4]; qs[16]}: codes 0..31 unsigned, Q5_0's -16 in the
// offset. The fifth bits of both blocks are one 64-bit mask: VPMOVM2B makes bit j byte j.
template <int kBytes, bool kHasMin>
struct Q5Format {
  using Row = const uint8_t*;
  static constexpr bool kSigned = false;
  static constexpr bool kSuper = false;
  static constexpr int kQhAt = kHasMin ? 4 : 2;
  template <bool kPair>
  static __m512i Values(Row r, int64_t b) {
    const uint8_t* b0 = r + b * kBytes;
    const uint8_t* b1 = b0 + kBytes;
    uint32_t qh0, qh1 = 0;
    std::memcpy(&qh0, b0 + kQhAt, 4);
    if (kPair) std::memcpy(&qh1, b1 + kQhAt, 4);
    const __mmask64 bits = static_cast<uint64_t>(qh0) | static_cast<uint64_t>(qh1) << 32;
    const __m512i fifth = _mm512_and_si512(_mm512_movm_epi8(bits), _mm512_set1_epi8(0x10));
    return _mm512_or_si512(Nibbles<kPair>(b0 + kQhAt + 4, b1 + kQhAt + 4), fifth);
  }
  template <bool kPair>
  static __m512 Scale(Row r, int64_t b) {
    return PerBlock(HalfAt(r + b * kBytes), kPair ? HalfAt(r + (b + 1) * kBytes) : 0.0f);
  }
  static float Offset(Row r, int64_t b) {
    const uint8_t* blk = r + b * kBytes;
    return kHasMin ? HalfAt(blk + 2) : -16.0f * HalfAt(blk);
  }
  static void Fetch(Row r, int64_t b) { Prefetch(r + b * kBytes); }
};
using Q5_0Format = Q5Format<22, false>;
using Q5_1Format = Q5Format<24, true>;

struct Q8_0Format {
  using Row = const uint8_t*;
  static constexpr bool kSigned = true;
  static constexpr bool kSuper = false;
  template <bool kPair>
  static __m512i Values(Row r, int64_t b) {
    const __m256i lo = Load32(r + b * 34 + 2);
    return Join(lo, kPair ? Load32(r + (b + 1) * 34 + 2) : _mm256_setzero_si256());
  }
  template <bool kPair>
  static __m512 Scale(Row r, int64_t b) {
    return PerBlock(HalfAt(r + b * 34), kPair ? HalfAt(r + (b + 1) * 34) : 0.0f);
  }
  static float Offset(Row, int64_t) { return 0.0f; }
  static void Fetch(Row r, int64_t b) { Prefetch(r + b * 34); }
};

// The prefetch of a super-block: one per cache line it may touch (the blocks are not aligned,
// so consecutive super-blocks' prefetches 64 bytes apart cover every line).
template <int kBytes>
inline void PrefetchSuper(const uint8_t* blk) {
  for (int off = 0; off < kBytes; off += 64) Prefetch(blk + off);
}

// The K formats: 256-element super-blocks, taken as 4 pairs of Q8 blocks. Their scales are
// decoded to fp32 once per row and super-block by Load, into a Super that Values / Scale read
// pair p of (blocks 2p, 2p + 1; p a constant once the loop over pairs is unrolled) and Offset
// block k of. Layouts as in quant_kernels_x86.h.
//
// Q4_K / Q5_K: pair p is the low and the high nibbles of the same 32 bytes qs[32p ..], so one
// load, broadcast to both halves, the upper half shifted by 4. Q5_K's fifth bits (bits 2p and
// 2p + 1 of each qh byte) are tested into a 64-bit mask.
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
  static __m512i Values(const Super& s, int p) {
    const __m512i v = _mm512_broadcast_i64x4(Load32(s.qs + 32 * p));
    const __m512i shifts = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
    __m512i q = _mm512_and_si512(_mm512_srlv_epi64(v, shifts), _mm512_set1_epi8(0x0F));
    if constexpr (kFive) {
      const __m512i h = _mm512_broadcast_i64x4(Load32(s.qh));
      const __m512i bits = Join(_mm256_set1_epi8(static_cast<char>(1 << (2 * p))),
                                _mm256_set1_epi8(static_cast<char>(1 << (2 * p + 1))));
      // Bit 4 of q is clear, so adding 16 where the fifth bit is set is an or.
      const __mmask64 fifth = _mm512_test_epi8_mask(h, bits);
      q = _mm512_mask_add_epi8(q, fifth, q, _mm512_set1_epi8(0x10));
    }
    return q;
  }
  static __m512 Scale(const Super& s, int p) {
    return PerBlock(s.scale[2 * p], s.scale[2 * p + 1]);
  }
  static float Offset(const Super& s, int k) { return s.offset[k]; }
};
using Q4_KFormat = K45Format<false>;
using Q5_KFormat = K45Format<true>;

// Q6_K: pair p = 2h + e is blocks 4h + 2e and 4h + 2e + 1: the 64 bytes ql[64h ..], low nibbles
// for e = 0 and high for e = 1, and the 32 bytes qh[32h ..] in both halves, their bits 4e, 4e + 1
// (lower half) and 4e + 2, 4e + 3 (upper) moved to bits 4-5 by a 64-bit shift per half (the mask
// clears what crosses bytes). Signed values q - 32, as in the AVX2 kernels.
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
    const __m512 d = _mm512_set1_ps(HalfAt(blk + 208));
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 192));
    _mm512_storeu_ps(out.scale, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc)), d));
    return out;
  }
  static __m512i Values(const Super& s, int p) {
    const int h = p / 2, e = p % 2;
    const __m512i lo_bytes = Load64(s.ql + 64 * h);
    const __m512i lo = _mm512_and_si512(e == 0 ? lo_bytes : _mm512_srli_epi16(lo_bytes, 4),
                                        _mm512_set1_epi8(0x0F));
    const __m512i hb = _mm512_broadcast_i64x4(Load32(s.qh + 32 * h));
    const __m512i hi = e == 0 ? _mm512_sllv_epi64(hb, _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4))
                              : _mm512_srlv_epi64(hb, _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0));
    const __m512i q = _mm512_or_si512(lo, _mm512_and_si512(hi, _mm512_set1_epi8(0x30)));
    return _mm512_sub_epi8(q, _mm512_set1_epi8(32));
  }
  static __m512 Scale(const Super& s, int p) {
    // Scales 4p..4p+3, each repeated over four lanes.
    const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_loadu_ps(s.scale + 4 * p)));
  }
  static float Offset(const Super&, int) { return 0.0f; }
};

// Per 32-bit lane, the sum of four products of the weight and activation bytes. VPDPBUSD takes
// one unsigned operand: a signed weight gives its magnitude and its sign moves to the activation
// (|w| <= 128, |x| <= 127, so nothing overflows).
template <class Fmt>
inline __m512i Dot(__m512i w, __m512i x) {
  if constexpr (Fmt::kSigned) {
    const __mmask64 negative = _mm512_movepi8_mask(w);
    const __m512i x_signed = _mm512_mask_sub_epi8(x, negative, _mm512_setzero_si512(), x);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), x_signed);
  } else {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, x);
  }
}

// R weight rows x T activation rows, blocks taken two at a time; each pair of weight blocks is
// decoded once for T tokens and each pair of activation blocks loaded once for R rows. The loops
// over R and T are unrolled by hand (pragma) so GCC keeps the accumulators in registers.
template <class Fmt, int R, int T>
struct MicroTile {
  const typename Fmt::Row* rows;
  const Q8Rows& x;
  int64_t t0;
  __m512 acc[R][T];
  float offsets[R][T];

  // Blocks b (and b + 1 when kPair) of the R rows, decoded, against the same blocks of the T
  // tokens.
  template <bool kPair>
  void Add(int64_t b, const __m512i* w, const __m512* scale, const float (*offset)[2]) {
#pragma GCC unroll 4
    for (int j = 0; j < T; ++j) {
      const int64_t t = t0 + j;
      const int8_t* xq = x.row_q(t) + b * kQ8Block;
      const __m512i xv = kPair ? Load64(xq) : Join(Load32(xq), _mm256_setzero_si256());
      const float* d = x.row_d(t) + b;
      const float* s = x.row_s(t) + b;
      const __m512 xd = PerBlock(d[0], kPair ? d[1] : 0.0f);
      const float s0 = s[0], s1 = kPair ? s[1] : 0.0f;
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) {
        const __m512i p = Dot<Fmt>(w[i], xv);
        acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(scale[i], xd), acc[i][j]);
        offsets[i][j] += offset[i][0] * s0 + offset[i][1] * s1;
      }
    }
  }

  template <bool kPair>
  void Step(int64_t b) {
    __m512i w[R];
    __m512 scale[R];
    float offset[R][2];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      Fmt::Fetch(rows[i], b);
      w[i] = Fmt::template Values<kPair>(rows[i], b);
      scale[i] = Fmt::template Scale<kPair>(rows[i], b);
      offset[i][0] = Fmt::Offset(rows[i], b);
      offset[i][1] = kPair ? Fmt::Offset(rows[i], b + 1) : 0.0f;
    }
    Add<kPair>(b, w, scale, offset);
  }

  // Super-block s of the R rows: decoded once, then its 4 pairs of blocks.
  void SuperStep(int64_t s) {
    typename Fmt::Super sup[R];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) sup[i] = Fmt::Load(rows[i], s);
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) {
      __m512i w[R];
      __m512 scale[R];
      float offset[R][2];
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) {
        w[i] = Fmt::Values(sup[i], p);
        scale[i] = Fmt::Scale(sup[i], p);
        offset[i][0] = Fmt::Offset(sup[i], 2 * p);
        offset[i][1] = Fmt::Offset(sup[i], 2 * p + 1);
      }
      Add<true>(8 * s + 2 * p, w, scale, offset);
    }
  }

  void Run(float* out, int64_t out_stride) {
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
#pragma GCC unroll 4
      for (int j = 0; j < T; ++j) {
        acc[i][j] = _mm512_setzero_ps();
        offsets[i][j] = 0.0f;
      }
    }
    const int64_t nb = x.cols / kQ8Block;
    if constexpr (Fmt::kSuper) {
      for (int64_t s = 0; s < nb / 8; ++s) SuperStep(s);
    } else {
      int64_t b = 0;
      for (; b + 2 <= nb; b += 2) Step<true>(b);
      if (b < nb) Step<false>(b);
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
#pragma GCC unroll 4
      for (int j = 0; j < T; ++j)
        out[(t0 + j) * out_stride + i] = _mm512_reduce_add_ps(acc[i][j]) + offsets[i][j];
    }
  }
};

template <class Fmt, int R, int T>
void RunMicroTile(const typename Fmt::Row* rows, const Q8Rows& x, int64_t t0, float* out,
                  int64_t out_stride) {
  MicroTile<Fmt, R, T> tile{rows, x, t0, {}, {}};
  tile.Run(out, out_stride);
}

template <class Fmt, int R>
void RowsTile(const typename Fmt::Row* rows, const Q8Rows& x, float* out, int64_t out_stride) {
  constexpr int kT = 4;
  int64_t t = 0;
  for (; t + kT <= x.rows; t += kT) RunMicroTile<Fmt, R, kT>(rows, x, t, out, out_stride);
  switch (x.rows - t) {
    case 3:
      RunMicroTile<Fmt, R, 3>(rows, x, t, out, out_stride);
      break;
    case 2:
      RunMicroTile<Fmt, R, 2>(rows, x, t, out, out_stride);
      break;
    case 1:
      RunMicroTile<Fmt, R, 1>(rows, x, t, out, out_stride);
      break;
    default:
      break;
  }
}

template <class Fmt>
void Tile(const typename Fmt::Row* rows, int n, const Q8Rows& x, float* out, int64_t out_stride) {
  constexpr int kR = 2;
  int i = 0;
  for (; i + kR <= n; i += kR) RowsTile<Fmt, kR>(rows + i, x, out + i, out_stride);
  if (i < n) RowsTile<Fmt, 1>(rows + i, x, out + i, out_stride);
}

}  // namespace

const QuantKernels kQuantKernelsAvx512Vnni = {
    Tile<Q4_0Format>, Tile<Q4_1Format>, Tile<Q5_0Format>, Tile<Q5_1Format>,
    Tile<Q8_0Format>, Tile<Q4_KFormat>, Tile<Q5_KFormat>, Tile<Q6_KFormat>};

}  // namespace ite::cpu

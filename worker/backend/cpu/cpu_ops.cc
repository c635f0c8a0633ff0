#include "worker/backend/cpu/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ITE_CPU_AVX2 1
#endif

#include "common/check.h"
#include "common/thread_pool.h"

namespace ite::cpu {
namespace {

// Runs fn over [0, n) on the pool, or inline without one.
template <typename Fn>
void ForRange(ThreadPool* pool, int64_t n, int64_t grain, Fn&& fn) {
  if (pool == nullptr) {
    if (n > 0) fn(int64_t{0}, n);
    return;
  }
  pool->ParallelFor(n, grain, fn);
}

inline float Bf16ToF32(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Rounds to nearest even; NaN stays NaN.
inline uint16_t F32ToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  if ((x & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((x >> 16) | 0x40);
  x += 0x7FFF + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

// How a weight row element of type W becomes fp32, scalar and 8 at a time.
template <typename W>
struct WeightLoad;

template <>
struct WeightLoad<float> {
  static float One(const float* w) { return *w; }
#ifdef ITE_CPU_AVX2
  static __m256 Eight(const float* w) { return _mm256_loadu_ps(w); }
#endif
};

template <>
struct WeightLoad<uint16_t> {
  static float One(const uint16_t* w) { return Bf16ToF32(*w); }
#ifdef ITE_CPU_AVX2
  static __m256 Eight(const uint16_t* w) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
#endif
};

#ifdef ITE_CPU_AVX2
inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

// Micro-kernel: the MR x NR dot products of rows x[0..MR) with weight rows w[0..NR), written to
// out[i * ldo + j]. Each weight vector loaded is used by all MR rows of x. The loops over MR and
// NR are unrolled explicitly: GCC at -O2 leaves them rolled and keeps the accumulators on the
// stack, which costs a load and a store per FMA.
template <typename W, int MR, int NR>
void DotTile(const float* x, const W* w, int32_t k, float* out, int32_t ldo) {
  int32_t kk = 0;
  float acc[MR][NR] = {};
#ifdef ITE_CPU_AVX2
  __m256 vacc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) vacc[i][j] = _mm256_setzero_ps();
  for (; kk + 8 <= k; kk += 8) {
    __m256 wv[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) wv[j] = WeightLoad<W>::Eight(w + static_cast<int64_t>(j) * k + kk);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      __m256 xv = _mm256_loadu_ps(x + static_cast<int64_t>(i) * k + kk);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) vacc[i][j] = _mm256_fmadd_ps(xv, wv[j], vacc[i][j]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = HorizontalSum(vacc[i][j]);
#endif
  for (; kk < k; ++kk) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      float xv = x[static_cast<int64_t>(i) * k + kk];
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j)
        acc[i][j] += xv * WeightLoad<W>::One(w + static_cast<int64_t>(j) * k + kk);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) out[static_cast<int64_t>(i) * ldo + j] = acc[i][j];
}

// Rows [m0, m0 + mr) of x against weight rows [n0, n0 + nr), any mr <= 2, nr <= 8.
template <typename W>
void DotTileAny(const float* x, const W* w, int32_t mr, int32_t nr, int32_t k, float* out,
                int32_t ldo) {
  if (mr == 2 && nr == 4) return DotTile<W, 2, 4>(x, w, k, out, ldo);
  if (mr == 1 && nr == 8) return DotTile<W, 1, 8>(x, w, k, out, ldo);
  if (mr == 1 && nr == 4) return DotTile<W, 1, 4>(x, w, k, out, ldo);
  for (int32_t i = 0; i < mr; ++i)
    for (int32_t j = 0; j < nr; ++j)
      DotTile<W, 1, 1>(x + static_cast<int64_t>(i) * k, w + static_cast<int64_t>(j) * k, k,
                       out + static_cast<int64_t>(i) * ldo + j, ldo);
}

// Weight rows per cache block: a block of weights is reused by every row of x before moving on.
constexpr int32_t kBlockRows = 32;
constexpr int32_t kTileM = 2;
constexpr int32_t kTileN = 4;

template <typename W>
void MatMulImpl(const float* x, const W* w, const float* bias, int32_t m, int32_t n, int32_t k,
                float* out, ThreadPool* pool) {
  ITE_CHECK(m >= 0 && n >= 0 && k >= 0, "MatMul shape m={} n={} k={}", m, n, k);
  int64_t blocks = (n + kBlockRows - 1) / kBlockRows;
  ForRange(pool, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      int32_t n0 = static_cast<int32_t>(b * kBlockRows);
      int32_t n1 = std::min(n, n0 + kBlockRows);
      for (int32_t i = 0; i < m; i += kTileM) {
        int32_t mr = std::min(kTileM, m - i);
        // A single row (batch-1 decode) reads 8 weight rows at once: more loads in flight.
        const int32_t tile_n = mr == 1 ? 2 * kTileN : kTileN;
        for (int32_t j = n0; j < n1; j += tile_n) {
          int32_t nr = std::min(tile_n, n1 - j);
          DotTileAny<W>(x + static_cast<int64_t>(i) * k, w + static_cast<int64_t>(j) * k, mr, nr, k,
                        out + static_cast<int64_t>(i) * n + j, n);
        }
      }
      if (bias != nullptr) {
        for (int32_t i = 0; i < m; ++i)
          for (int32_t j = n0; j < n1; ++j) out[static_cast<int64_t>(i) * n + j] += bias[j];
      }
    }
  });
}

}  // namespace

void Embedding(const float* table, int32_t dim, std::span<const int32_t> ids, float* out) {
  for (size_t t = 0; t < ids.size(); ++t) {
    std::memcpy(out + t * dim, table + static_cast<int64_t>(ids[t]) * dim, sizeof(float) * dim);
  }
}

void RmsNorm(const float* x, const float* weight, int32_t rows, int32_t dim, float eps,
             float* out) {
  for (int32_t r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<int64_t>(r) * dim;
    float* orow = out + static_cast<int64_t>(r) * dim;
    float sum = 0.0f;
    for (int32_t i = 0; i < dim; ++i) sum += xr[i] * xr[i];
    float inv = 1.0f / std::sqrt(sum / static_cast<float>(dim) + eps);
    for (int32_t i = 0; i < dim; ++i) orow[i] = xr[i] * inv * weight[i];
  }
}

void AddRmsNorm(float* residual, const float* x, const float* weight, int32_t rows, int32_t dim,
                float eps, float* out) {
  int64_t total = static_cast<int64_t>(rows) * dim;
  for (int64_t i = 0; i < total; ++i) residual[i] += x[i];
  RmsNorm(residual, weight, rows, dim, eps, out);
}

void MatMul(const float* x, const float* w, const float* bias, int32_t m, int32_t n, int32_t k,
            float* out, ThreadPool* pool) {
  MatMulImpl<float>(x, w, bias, m, n, k, out, pool);
}

void MatMulBf16(const float* x, const uint16_t* w, const float* bias, int32_t m, int32_t n,
                int32_t k, float* out, ThreadPool* pool) {
  MatMulImpl<uint16_t>(x, w, bias, m, n, k, out, pool);
}

std::vector<float> RopeInvFreq(const ModelConfig& config) {
  int32_t half = config.head_dim / 2;
  std::vector<float> inv(half);
  // fp32 like the Hugging Face reference: base ** (2i / d) on float32 exponents.
  for (int32_t i = 0; i < half; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(config.head_dim);
    inv[i] = static_cast<float>(
        1.0 / std::pow(static_cast<double>(config.rope_theta), static_cast<double>(exponent)));
  }
  const RopeScaling& rs = config.rope_scaling;
  if (rs.type == "llama3") {
    // Llama 3.1 frequency scaling: long wavelengths divided by `factor`, short ones kept, the
    // band between interpolated smoothly.
    float old_len = static_cast<float>(rs.original_max_position);
    float low_wavelen = old_len / rs.low_freq_factor;
    float high_wavelen = old_len / rs.high_freq_factor;
    for (int32_t i = 0; i < half; ++i) {
      float wavelen = 2.0f * std::numbers::pi_v<float> / inv[i];
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        inv[i] = inv[i] / rs.factor;
        continue;
      }
      float smooth =
          (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
      inv[i] = (1.0f - smooth) * inv[i] / rs.factor + smooth * inv[i];
    }
  }
  return inv;
}

void Rope(float* q, float* k, std::span<const int32_t> positions, int32_t num_heads,
          int32_t num_kv_heads, int32_t head_dim, std::span<const float> inv_freq) {
  int32_t half = head_dim / 2;
  ITE_CHECK(static_cast<int32_t>(inv_freq.size()) == half, "inv_freq size {} != {}",
            inv_freq.size(), half);
  std::vector<float> cos_v(half), sin_v(half);
  auto rotate = [&](float* head) {
    for (int32_t i = 0; i < half; ++i) {
      float x1 = head[i];
      float x2 = head[i + half];
      head[i] = x1 * cos_v[i] - x2 * sin_v[i];
      head[i + half] = x2 * cos_v[i] + x1 * sin_v[i];
    }
  };
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int32_t i = 0; i < half; ++i) {
      // The angle is an fp32 product as in the reference; cos/sin of it are then exact.
      float angle = static_cast<float>(positions[t]) * inv_freq[i];
      cos_v[i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin_v[i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
    for (int32_t h = 0; h < num_heads; ++h)
      rotate(q + (static_cast<int64_t>(t) * num_heads + h) * head_dim);
    for (int32_t h = 0; h < num_kv_heads; ++h)
      rotate(k + (static_cast<int64_t>(t) * num_kv_heads + h) * head_dim);
  }
}

void SiluMul(const float* gate_up, int32_t rows, int32_t inter, float* out) {
  for (int32_t r = 0; r < rows; ++r) {
    const float* g = gate_up + static_cast<int64_t>(r) * 2 * inter;
    const float* u = g + inter;
    float* o = out + static_cast<int64_t>(r) * inter;
    for (int32_t i = 0; i < inter; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }
}

void Softmax(float* x, int32_t rows, int32_t n) {
  for (int32_t r = 0; r < rows; ++r) {
    float* row = x + static_cast<int64_t>(r) * n;
    float mx = -INFINITY;
    for (int32_t i = 0; i < n; ++i) mx = std::max(mx, row[i]);
    float sum = 0.0f;
    for (int32_t i = 0; i < n; ++i) {
      row[i] = std::exp(row[i] - mx);
      sum += row[i];
    }
    float inv = 1.0f / sum;
    for (int32_t i = 0; i < n; ++i) row[i] *= inv;
  }
}

void KvWrite(const PagedKv& cache, std::span<const int32_t> block_table,
             std::span<const int32_t> positions, const float* k, const float* v) {
  int64_t row = static_cast<int64_t>(cache.num_kv_heads) * cache.head_dim;
  for (size_t t = 0; t < positions.size(); ++t) {
    int32_t pos = positions[t];
    int32_t block = block_table[pos / cache.block_size];
    ITE_DCHECK(block >= 0 && block < cache.num_blocks, "block {}", block);
    int64_t slot = static_cast<int64_t>(block) * cache.block_size + pos % cache.block_size;
    if (cache.k16 != nullptr) {
      for (int64_t i = 0; i < row; ++i) {
        cache.k16[slot * row + i] = F32ToBf16(k[t * row + i]);
        cache.v16[slot * row + i] = F32ToBf16(v[t * row + i]);
      }
      continue;
    }
    std::memcpy(cache.k + slot * row, k + t * row, sizeof(float) * row);
    std::memcpy(cache.v + slot * row, v + t * row, sizeof(float) * row);
  }
}

namespace {

#ifdef ITE_CPU_AVX2
inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 Load8(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
#endif
inline float Load1(const float* p) { return *p; }
inline float Load1(const uint16_t* p) { return Bf16ToF32(*p); }

template <typename T>
inline float Dot(const float* a, const T* b, int32_t n) {
  int32_t i = 0;
  float sum = 0.0f;
#ifdef ITE_CPU_AVX2
  __m256 acc = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), Load8(b + i), acc);
  sum = HorizontalSum(acc);
#endif
  for (; i < n; ++i) sum += a[i] * Load1(b + i);
  return sum;
}

// out += w * v
template <typename T>
inline void Axpy(float w, const T* v, float* out, int32_t n) {
  int32_t i = 0;
#ifdef ITE_CPU_AVX2
  // Explicit: GCC -O2's cheap vectoriser leaves this loop scalar, and it is half of attention.
  const __m256 wv = _mm256_set1_ps(w);
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_fmadd_ps(wv, Load8(v + i), _mm256_loadu_ps(out + i)));
#endif
  for (; i < n; ++i) out[i] += w * Load1(v + i);
}

template <typename T>
void PagedAttentionOf(const PagedKv& cache, const T* k_cache, const T* v_cache,
                      std::span<const int32_t> block_table, int32_t start_pos, const float* q,
                      int32_t n, int32_t num_heads, float scale, float* out, ThreadPool* pool);

}  // namespace

void PagedAttention(const PagedKv& cache, std::span<const int32_t> block_table, int32_t start_pos,
                    const float* q, int32_t n, int32_t num_heads, float scale, float* out,
                    ThreadPool* pool) {
  if (cache.k16 != nullptr) {
    PagedAttentionOf<uint16_t>(cache, cache.k16, cache.v16, block_table, start_pos, q, n, num_heads,
                               scale, out, pool);
  } else {
    PagedAttentionOf<float>(cache, cache.k, cache.v, block_table, start_pos, q, n, num_heads, scale,
                            out, pool);
  }
}

namespace {

template <typename T>
void PagedAttentionOf(const PagedKv& cache, const T* k_cache, const T* v_cache,
                      std::span<const int32_t> block_table, int32_t start_pos, const float* q,
                      int32_t n, int32_t num_heads, float scale, float* out, ThreadPool* pool) {
  const int32_t hd = cache.head_dim;
  const int32_t group = num_heads / cache.num_kv_heads;
  ITE_CHECK(group * cache.num_kv_heads == num_heads, "heads {} kv heads {}", num_heads,
            cache.num_kv_heads);
  const int64_t row = static_cast<int64_t>(cache.num_kv_heads) * hd;
  // One work item per (token, head): each is independent.
  ForRange(pool, static_cast<int64_t>(n) * num_heads, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> scores;
    for (int64_t item = i0; item < i1; ++item) {
      int32_t t = static_cast<int32_t>(item / num_heads);
      int32_t h = static_cast<int32_t>(item % num_heads);
      int32_t kvh = h / group;
      int32_t len = start_pos + t + 1;
      const float* qh = q + (static_cast<int64_t>(t) * num_heads + h) * hd;
      scores.resize(len);
      // Positions a block at a time: a division per position would cost as much as its dot
      // product.
      const int32_t bs = cache.block_size;
      auto each_slot = [&](auto&& fn) {
        for (int32_t p0 = 0, b = 0; p0 < len; p0 += bs, ++b) {
          const int64_t base = static_cast<int64_t>(block_table[b]) * bs;
          const int32_t m = std::min(bs, len - p0);
          for (int32_t j = 0; j < m; ++j) fn(p0 + j, (base + j) * row + int64_t{kvh} * hd);
        }
      };
      float mx = -INFINITY;
      each_slot([&](int32_t p, int64_t at) {
        scores[p] = Dot(qh, k_cache + at, hd) * scale;
        mx = std::max(mx, scores[p]);
      });
      float sum = 0.0f;
      for (int32_t p = 0; p < len; ++p) {
        scores[p] = std::exp(scores[p] - mx);
        sum += scores[p];
      }
      float inv = 1.0f / sum;
      float* oh = out + (static_cast<int64_t>(t) * num_heads + h) * hd;
      std::fill(oh, oh + hd, 0.0f);
      each_slot([&](int32_t p, int64_t at) { Axpy(scores[p] * inv, v_cache + at, oh, hd); });
    }
  });
}

}  // namespace

}  // namespace ite::cpu

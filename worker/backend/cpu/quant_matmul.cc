#include "worker/backend/cpu/quant_matmul.h"

#include <algorithm>

#include "common/check.h"

namespace ite::cpu {

namespace {

using Tile = void (*)(const uint8_t* const*, int, const Q8Rows&, float*, int64_t);

// The kernel that reads `dtype`'s blocks as stored, null for a format without one.
Tile TileFor(DType dtype, const QuantKernels& k) {
  switch (dtype) {
    case DType::kQ4_0:
      return k.tile_q4_0;
    case DType::kQ4_1:
      return k.tile_q4_1;
    case DType::kQ5_0:
      return k.tile_q5_0;
    case DType::kQ5_1:
      return k.tile_q5_1;
    case DType::kQ8_0:
      return k.tile_q8_0;
    case DType::kQ4_K:
      return k.tile_q4_k;
    case DType::kQ5_K:
      return k.tile_q5_k;
    case DType::kQ6_K:
      return k.tile_q6_k;
    default:
      return nullptr;
  }
}

// Rows per chunk handed to a thread: small enough that two threads share the work of one
// decode matmul evenly, large enough to amortise the claim; a multiple of the kernels' 2 rows.
constexpr int64_t kRowGrain = 32;

// Segments of a matrix in the most that occur: Q|K|V in three formats.
constexpr size_t kMaxSegments = 8;

}  // namespace

bool QuantMatMulSupported(DType dtype) { return TileFor(dtype, kQuantKernelsScalar) != nullptr; }

QuantMatrix QuantMatrixOf(const Tensor& w) {
  ITE_CHECK(w.shape.size() == 2, "QuantMatrixOf: {} {}", DTypeName(w.dtype), w.ShapeString());
  QuantMatrix m;
  m.rows = static_cast<int32_t>(w.shape[0]);
  m.cols = static_cast<int32_t>(w.shape[1]);
  m.row_ptrs.resize(static_cast<size_t>(m.rows));
  for (int32_t r = 0; r < m.rows; ++r) m.row_ptrs[r] = w.row(r);
  if (!w.mixed()) {
    m.segments.push_back({w.dtype, 0, m.rows});
  } else {
    int32_t row0 = 0;
    for (const RowSegment& s : *w.segments) {
      m.segments.push_back({s.dtype, row0, static_cast<int32_t>(s.rows)});
      row0 += static_cast<int32_t>(s.rows);
    }
    ITE_CHECK(row0 == m.rows, "QuantMatrixOf: segments of {} rows for {}", row0, m.rows);
  }
  ITE_CHECK(m.segments.size() <= kMaxSegments, "QuantMatrixOf: {} segments",
            m.segments.size());
  for (const QuantSegment& s : m.segments) {
    ITE_CHECK(QuantMatMulSupported(s.dtype) && m.cols % DTypeBlockSize(s.dtype) == 0,
              "QuantMatrixOf: {} rows of {}", DTypeName(s.dtype), m.cols);
  }
  return m;
}

void QuantMatMul(const float* x, const QuantMatrix& w, const float* bias, int32_t m, float* out,
                 const QuantKernels& kernels, QuantScratch* scratch, ThreadPool* pool) {
  // Every format's rows are whole Q8 blocks, so one quantization of x serves all segments.
  QuantizeQ8Rows(x, m, w.cols, &scratch->x);
  const Q8Rows& xq = scratch->x;
  Tile tiles[kMaxSegments];
  for (size_t i = 0; i < w.segments.size(); ++i) tiles[i] = TileFor(w.segments[i].dtype, kernels);
  const int64_t out_stride = w.rows;
  // A chunk that straddles a segment boundary runs each side with its own kernel; the kernels
  // take any row count, so a segment need not be a multiple of their tile.
  auto run = [&](int64_t r0, int64_t r1) {
    for (size_t i = 0; i < w.segments.size(); ++i) {
      const QuantSegment& s = w.segments[i];
      const int64_t a = std::max<int64_t>(r0, s.row0);
      const int64_t b = std::min<int64_t>(r1, int64_t{s.row0} + s.rows);
      if (a < b) tiles[i](w.row_ptrs.data() + a, static_cast<int>(b - a), xq, out + a, out_stride);
    }
    if (bias != nullptr) {
      for (int32_t t = 0; t < m; ++t) {
        for (int64_t r = r0; r < r1; ++r) out[t * out_stride + r] += bias[r];
      }
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(w.rows, kRowGrain, run);
  } else {
    run(0, w.rows);
  }
}

}  // namespace ite::cpu

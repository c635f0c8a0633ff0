#include "worker/backend/cpu/quant_matmul.h"

#include <algorithm>

#include "common/check.h"

namespace ite::cpu {

QuantMatrix QuantMatrixOf(const Tensor& w) {
  ITE_CHECK(w.shape.size() == 2 && UnpackSupported(w.dtype), "QuantMatrixOf: {} {}",
            DTypeName(w.dtype), w.ShapeString());
  QuantMatrix m;
  m.dtype = w.dtype;
  m.rows = static_cast<int32_t>(w.shape[0]);
  m.cols = static_cast<int32_t>(w.shape[1]);
  m.row_ptrs.resize(static_cast<size_t>(m.rows));
  for (int32_t r = 0; r < m.rows; ++r) m.row_ptrs[r] = w.row(r);
  return m;
}

namespace {

using DirectTile = void (*)(const uint8_t* const*, int, const Q8Rows&, float*, int64_t);

// The kernel that reads `dtype`'s blocks as stored, null where rows are unpacked first.
DirectTile DirectKernel(DType dtype, const QuantKernels& k) {
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

}  // namespace

void QuantMatMul(const float* x, const QuantMatrix& w, const float* bias, int32_t m, float* out,
                 const QuantKernels& kernels, QuantScratch* scratch, ThreadPool* pool) {
  QuantizeQ8Rows(x, m, w.cols, &scratch->x);
  const Q8Rows& xq = scratch->x;
  const DirectTile direct = DirectKernel(w.dtype, kernels);
  const int64_t out_stride = w.rows;
  auto run = [&](int64_t r0, int64_t r1) {
    const int n = static_cast<int>(r1 - r0);
    if (direct != nullptr) {
      direct(w.row_ptrs.data() + r0, n, xq, out + r0, out_stride);
    } else {
      // Each pool thread keeps its own buffers for the chunk's unpacked rows.
      thread_local std::vector<int8_t> q;
      thread_local std::vector<float> scales;
      thread_local std::vector<UnpackedRow> unpacked;
      const int64_t per_row_scales = w.cols / 16 + w.cols / kQ8Block;
      q.resize(static_cast<size_t>(n * w.cols));
      scales.resize(static_cast<size_t>(n * per_row_scales));
      unpacked.resize(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) {
        float* s = scales.data() + i * per_row_scales;
        unpacked[i] = {q.data() + i * static_cast<int64_t>(w.cols), s, s + w.cols / 16};
        UnpackRow(w.dtype, w.row_ptrs[static_cast<size_t>(r0 + i)], w.cols, unpacked[i]);
      }
      kernels.tile_unpacked(unpacked.data(), n, xq, out + r0, out_stride);
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

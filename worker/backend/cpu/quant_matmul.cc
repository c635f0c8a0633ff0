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

using DirectDot = float (*)(const uint8_t*, const Q8Row&, int64_t);

// The kernel that reads `dtype`'s blocks as stored, null where rows are unpacked first.
DirectDot DirectKernel(DType dtype, const QuantKernels& k) {
  switch (dtype) {
    case DType::kQ4_0:
      return k.dot_q4_0;
    case DType::kQ4_1:
      return k.dot_q4_1;
    case DType::kQ8_0:
      return k.dot_q8_0;
    default:
      return nullptr;
  }
}

// Rows per chunk handed to a thread: small enough that two threads share the work of one
// decode matmul evenly, large enough to amortise the claim.
constexpr int64_t kRowGrain = 32;

}  // namespace

void QuantMatMul(const float* x, const QuantMatrix& w, const float* bias, int32_t m, float* out,
                 const QuantKernels& kernels, QuantScratch* scratch, ThreadPool* pool) {
  QuantizeQ8Rows(x, m, w.cols, &scratch->x);
  const Q8Rows& xq = scratch->x;
  const int64_t nb = w.cols / kQ8Block;
  std::vector<Q8Row> xrows(static_cast<size_t>(m));
  for (int32_t t = 0; t < m; ++t) xrows[t] = {xq.row_q(t), xq.row_d(t), xq.row_s(t)};

  const DirectDot direct = DirectKernel(w.dtype, kernels);
  const int64_t out_stride = w.rows;
  auto run = [&](int64_t r0, int64_t r1) {
    // Each pool thread keeps its own buffers for unpacked rows.
    thread_local std::vector<int8_t> q;
    thread_local std::vector<float> scales;
    UnpackedRow unpacked{};
    if (direct == nullptr) {
      q.resize(static_cast<size_t>(w.cols));
      scales.resize(static_cast<size_t>(w.cols / 16 + nb));
      unpacked = {q.data(), scales.data(), scales.data() + w.cols / 16};
    }
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* row = w.row_ptrs[static_cast<size_t>(r)];
      const float b = bias ? bias[r] : 0.0f;
      if (direct != nullptr) {
        for (int32_t t = 0; t < m; ++t) out[t * out_stride + r] = direct(row, xrows[t], w.cols) + b;
      } else {
        UnpackRow(w.dtype, row, w.cols, unpacked);
        for (int32_t t = 0; t < m; ++t)
          out[t * out_stride + r] = kernels.dot_unpacked(unpacked, xrows[t], w.cols) + b;
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

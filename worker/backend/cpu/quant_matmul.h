// out = x @ W^T (+ bias) with W in a ggml block format, read where it is stored (usually the
// model file's memory map): x is quantized per row to Q8 blocks once, each weight row is dotted
// with every activation row by the kernels of the chosen instruction set, fp32 accumulation.
// Against the product with W dequantized to fp32, the error is that of quantizing x:
// |err(out[t, r])| <= sum over blocks of (max |x| in the block / 254) * sum |w| in the block,
// plus fp32 rounding.
#pragma once

#include <cstdint>
#include <vector>

#include "common/thread_pool.h"
#include "worker/backend/cpu/quant_kernels.h"
#include "worker/model/tensor.h"

namespace ite::cpu {

// Rows [row0, row0 + rows) of a QuantMatrix, all in one block format.
struct QuantSegment {
  DType dtype = DType::kQ8_0;  // a format QuantMatMulSupported accepts
  int32_t row0 = 0;
  int32_t rows = 0;
};

struct QuantMatrix {
  int32_t rows = 0;                      // out
  int32_t cols = 0;                      // in, a multiple of every segment's block
  std::vector<const uint8_t*> row_ptrs;  // [rows]: where each row's blocks start
  // In row order, covering [0, rows): one for a matrix in a single format, several for a fused
  // one whose parts keep their own formats (Tensor::segments); each is multiplied by its own
  // format's kernel into its columns of the output.
  std::vector<QuantSegment> segments;
};

// Whether the kernels read `dtype`'s blocks (every block format the CPU matmul takes).
bool QuantMatMulSupported(DType dtype);

// The matrix of a quantized weight tensor [out, in] (contiguous or through its row pointers,
// in one block format or mixed), each format QuantMatMulSupported.
QuantMatrix QuantMatrixOf(const Tensor& w);

// Scratch of QuantMatMul (the quantized activations), kept between calls.
struct QuantScratch {
  Q8Rows x;
};

// x [m, w.cols] fp32, out [m, w.rows]; bias [w.rows] or null.
void QuantMatMul(const float* x, const QuantMatrix& w, const float* bias, int32_t m, float* out,
                 const QuantKernels& kernels, QuantScratch* scratch, ThreadPool* pool);

}  // namespace ite::cpu

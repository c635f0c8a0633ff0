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

struct QuantMatrix {
  DType dtype = DType::kQ8_0;            // a block format UnpackSupported handles
  int32_t rows = 0;                      // out
  int32_t cols = 0;                      // in, a multiple of the format's block
  std::vector<const uint8_t*> row_ptrs;  // [rows]: where each row's blocks start
};

// The matrix of a quantized weight tensor [out, in] (contiguous or through its row pointers).
QuantMatrix QuantMatrixOf(const Tensor& w);

// Scratch of QuantMatMul (the quantized activations), kept between calls.
struct QuantScratch {
  Q8Rows x;
};

// x [m, w.cols] fp32, out [m, w.rows]; bias [w.rows] or null.
void QuantMatMul(const float* x, const QuantMatrix& w, const float* bias, int32_t m, float* out,
                 const QuantKernels& kernels, QuantScratch* scratch, ThreadPool* pool);

}  // namespace ite::cpu

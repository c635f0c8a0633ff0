// The activation side of a quantized matrix product on the CPU, in the layout the dot-product
// kernels read (the weight side is the ggml blocks as stored): Q8Rows, activations quantized
// per row in blocks of 32 (x ~= d * q, q in [-127, 127]) over `cols` elements, a multiple of 32.
#pragma once

#include <cstdint>
#include <vector>

#include "worker/model/tensor.h"

namespace ite::cpu {

inline constexpr int kQ8Block = 32;

struct Q8Rows {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<int8_t> q;  // [rows, cols]
  std::vector<float> d;   // [rows, cols / 32] block scale
  std::vector<float> s;   // [rows, cols / 32] d * (sum of the block's q), for offset terms

  const int8_t* row_q(int64_t r) const { return q.data() + r * cols; }
  const float* row_d(int64_t r) const { return d.data() + r * (cols / kQ8Block); }
  const float* row_s(int64_t r) const { return s.data() + r * (cols / kQ8Block); }
};

// x [rows, cols] (cols a multiple of 32) into `out`, reusing its storage.
void QuantizeQ8Rows(const float* x, int64_t rows, int64_t cols, Q8Rows* out);

// The f16 scale stored at p (unaligned, as in ggml blocks).
float BlockHalf(const uint8_t* p);

}  // namespace ite::cpu

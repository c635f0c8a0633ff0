#include "worker/backend/cpu/quant_blocks.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/check.h"

namespace ite::cpu {

float BlockHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

void QuantizeQ8Rows(const float* x, int64_t rows, int64_t cols, Q8Rows* out) {
  ITE_CHECK(cols % kQ8Block == 0, "QuantizeQ8Rows: {} columns", cols);
  const int64_t nb = cols / kQ8Block;
  out->rows = rows;
  out->cols = cols;
  out->q.resize(static_cast<size_t>(rows * cols));
  out->d.resize(static_cast<size_t>(rows * nb));
  out->s.resize(out->d.size());
  for (int64_t b = 0; b < rows * nb; ++b) {
    const float* v = x + b * kQ8Block;
    float amax = 0.0f;
    for (int i = 0; i < kQ8Block; ++i) amax = std::max(amax, std::fabs(v[i]));
    const float d = amax / 127.0f;
    const float inv = d > 0.0f ? 1.0f / d : 0.0f;
    int8_t* q = out->q.data() + b * kQ8Block;
    int sum = 0;
    for (int i = 0; i < kQ8Block; ++i) {
      q[i] = static_cast<int8_t>(std::lrintf(v[i] * inv));
      sum += q[i];
    }
    out->d[b] = d;
    out->s[b] = d * static_cast<float>(sum);
  }
}

}  // namespace ite::cpu

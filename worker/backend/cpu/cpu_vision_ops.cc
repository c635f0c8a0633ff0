#include "worker/backend/cpu/cpu_vision_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace ite::cpu {

void LayerNorm(const float* x, const float* w, const float* b, int32_t rows, int32_t dim, float eps,
               float* out) {
  for (int32_t r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<int64_t>(r) * dim;
    float* o = out + static_cast<int64_t>(r) * dim;
    double mean = 0;
    for (int32_t i = 0; i < dim; ++i) mean += xr[i];
    mean /= dim;
    double var = 0;
    for (int32_t i = 0; i < dim; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    var /= dim;
    const auto m = static_cast<float>(mean);
    const auto inv = static_cast<float>(1.0 / std::sqrt(var + eps));
    for (int32_t i = 0; i < dim; ++i) o[i] = (xr[i] - m) * inv * w[i] + b[i];
  }
}

void Gelu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
}

void QuickGelu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + std::exp(-1.702f * x[i]));
}

void DenseAttention(const float* qkv, int32_t rows, int32_t num_heads, int32_t head_dim, float* out,
                    ThreadPool* pool) {
  const int64_t width = int64_t{3} * num_heads * head_dim;
  const int64_t hidden = int64_t{num_heads} * head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  // One task per (head, query row); each keeps its own score row.
  pool->ParallelFor(int64_t{num_heads} * rows, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> s(static_cast<size_t>(rows));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t h = task / rows, i = task % rows;
      const float* q = qkv + i * width + h * head_dim;
      float mx = -INFINITY;
      for (int32_t j = 0; j < rows; ++j) {
        const float* k = qkv + j * width + hidden + h * head_dim;
        float dot = 0;
        for (int32_t d = 0; d < head_dim; ++d) dot += q[d] * k[d];
        s[j] = dot * scale;
        mx = std::max(mx, s[j]);
      }
      float sum = 0;
      for (int32_t j = 0; j < rows; ++j) {
        s[j] = std::exp(s[j] - mx);
        sum += s[j];
      }
      float* o = out + i * hidden + h * head_dim;
      std::fill(o, o + head_dim, 0.0f);
      for (int32_t j = 0; j < rows; ++j) {
        const float* v = qkv + j * width + 2 * hidden + h * head_dim;
        const float p = s[j] / sum;
        for (int32_t d = 0; d < head_dim; ++d) o[d] += p * v[d];
      }
    }
  });
}

}  // namespace ite::cpu

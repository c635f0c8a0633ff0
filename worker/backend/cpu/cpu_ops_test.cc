// Each operator against a naive double-precision formula written out here, on random inputs and
// awkward shapes (odd sizes, sizes not a multiple of the vector width).
#include "worker/backend/cpu/cpu_ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numbers>
#include <random>

#include "common/thread_pool.h"

namespace ite::cpu {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

uint16_t ToBf16(float f) {  // truncation is enough to make a test weight
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return static_cast<uint16_t>(bits >> 16);
}

float FromBf16(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void NaiveMatMul(const std::vector<float>& x, const std::vector<float>& w, const float* bias, int m,
                 int n, int k, std::vector<double>* out) {
  out->assign(static_cast<size_t>(m) * n, 0.0);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = bias ? bias[j] : 0.0;
      for (int l = 0; l < k; ++l) s += static_cast<double>(x[i * k + l]) * w[j * k + l];
      (*out)[i * n + j] = s;
    }
}

TEST(CpuOpsTest, MatMulMatchesNaiveOverShapesAndThreads) {
  ThreadPool pool(3);
  const int shapes[][3] = {{1, 1, 1},   {1, 4, 8},    {2, 5, 7},     {3, 33, 17},
                           {5, 64, 64}, {7, 70, 100}, {1, 129, 576}, {4, 31, 9}};
  for (auto [m, n, k] : shapes) {
    auto x = Random(static_cast<size_t>(m) * k, m * 100 + n);
    auto w = Random(static_cast<size_t>(n) * k, n * 100 + k);
    auto bias = Random(n, 7);
    for (bool with_bias : {false, true}) {
      std::vector<double> ref;
      NaiveMatMul(x, w, with_bias ? bias.data() : nullptr, m, n, k, &ref);
      for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
        std::vector<float> out(static_cast<size_t>(m) * n, NAN);
        MatMul(x.data(), w.data(), with_bias ? bias.data() : nullptr, m, n, k, out.data(), p);
        for (size_t i = 0; i < out.size(); ++i)
          ASSERT_NEAR(out[i], ref[i], 1e-4 * std::sqrt(k) + 1e-5)
              << "m=" << m << " n=" << n << " k=" << k << " i=" << i;
      }
    }
  }
}

TEST(CpuOpsTest, MatMulBf16MatchesNaiveOnWidenedWeights) {
  ThreadPool pool(2);
  const int m = 3, n = 37, k = 45;
  auto x = Random(m * k, 1);
  auto wf = Random(n * k, 2);
  std::vector<uint16_t> wb(wf.size());
  for (size_t i = 0; i < wf.size(); ++i) {
    wb[i] = ToBf16(wf[i]);
    wf[i] = FromBf16(wb[i]);  // the exact values the bf16 kernel sees
  }
  auto bias = Random(n, 3);
  std::vector<double> ref;
  NaiveMatMul(x, wf, bias.data(), m, n, k, &ref);
  std::vector<float> out(m * n, NAN);
  MatMulBf16(x.data(), wb.data(), bias.data(), m, n, k, out.data(), &pool);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 1e-4);
}

TEST(CpuOpsTest, EmbeddingGathersRows) {
  const int dim = 5;
  auto table = Random(10 * dim, 4);
  std::vector<int32_t> ids = {3, 0, 9, 3};
  std::vector<float> out(ids.size() * dim);
  Embedding(table.data(), dim, ids, out.data());
  for (size_t t = 0; t < ids.size(); ++t)
    for (int i = 0; i < dim; ++i) EXPECT_EQ(out[t * dim + i], table[ids[t] * dim + i]);
}

TEST(CpuOpsTest, RmsNormAndAddRmsNorm) {
  const int rows = 3, dim = 19;
  const float eps = 1e-5f;
  auto x = Random(rows * dim, 5, 3.0f);
  auto w = Random(dim, 6);
  auto delta = Random(rows * dim, 7);
  std::vector<float> out(rows * dim);
  RmsNorm(x.data(), w.data(), rows, dim, eps, out.data());
  auto expect_norm = [&](const std::vector<float>& in, const std::vector<float>& got) {
    for (int r = 0; r < rows; ++r) {
      double ss = 0;
      for (int i = 0; i < dim; ++i) ss += static_cast<double>(in[r * dim + i]) * in[r * dim + i];
      double inv = 1.0 / std::sqrt(ss / dim + eps);
      for (int i = 0; i < dim; ++i)
        ASSERT_NEAR(got[r * dim + i], in[r * dim + i] * inv * w[i], 1e-5);
    }
  };
  expect_norm(x, out);

  std::vector<float> residual = x;
  std::vector<float> sum(rows * dim);
  for (size_t i = 0; i < sum.size(); ++i) sum[i] = x[i] + delta[i];
  AddRmsNorm(residual.data(), delta.data(), w.data(), rows, dim, eps, out.data());
  for (size_t i = 0; i < sum.size(); ++i) ASSERT_EQ(residual[i], sum[i]);
  expect_norm(sum, out);

  // In place (out aliases x) gives the same answer.
  std::vector<float> inplace = x;
  RmsNorm(inplace.data(), w.data(), rows, dim, eps, inplace.data());
  std::vector<float> fresh(rows * dim);
  RmsNorm(x.data(), w.data(), rows, dim, eps, fresh.data());
  EXPECT_EQ(inplace, fresh);
}

TEST(CpuOpsTest, RopeInvFreqPlainAndLlama3) {
  ModelConfig c;
  c.head_dim = 8;
  c.rope_theta = 10000.0f;
  auto inv = RopeInvFreq(c);
  ASSERT_EQ(inv.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(inv[i], std::pow(10000.0, -2.0 * i / 8), 1e-7);

  // Llama 3.1 scaling with head_dim 128, theta 500000: wavelengths below 8192/4 are kept, above
  // 8192/1 divided by 8, between them interpolated.
  c.head_dim = 128;
  c.rope_theta = 500000.0f;
  c.rope_scaling = {"llama3", 8.0f, 1.0f, 4.0f, 8192};
  auto scaled = RopeInvFreq(c);
  int kept = 0, divided = 0, mixed = 0;
  for (int i = 0; i < 64; ++i) {
    double base = std::pow(500000.0, -2.0 * i / 128);
    double wavelen = 2 * std::numbers::pi / base;
    if (wavelen < 8192.0 / 4) {
      EXPECT_NEAR(scaled[i], base, base * 1e-6);
      ++kept;
    } else if (wavelen > 8192.0) {
      EXPECT_NEAR(scaled[i], base / 8, base * 1e-6);
      ++divided;
    } else {
      double s = (8192.0 / wavelen - 1.0) / 3.0;
      EXPECT_NEAR(scaled[i], (1 - s) * base / 8 + s * base, base * 1e-5);
      ++mixed;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(mixed, 0);
}

TEST(CpuOpsTest, RopeRotatesPairsAsComplexNumbers) {
  const int n = 3, nh = 2, nkv = 1, hd = 6, half = 3;
  ModelConfig c;
  c.head_dim = hd;
  c.rope_theta = 100.0f;
  auto inv = RopeInvFreq(c);
  auto q = Random(n * nh * hd, 8);
  auto k = Random(n * nkv * hd, 9);
  auto q0 = q, k0 = k;
  std::vector<int32_t> pos = {0, 5, 1000};
  Rope(q.data(), k.data(), pos, nh, nkv, hd, inv);
  auto check = [&](const std::vector<float>& before, const std::vector<float>& after, int heads) {
    for (int t = 0; t < n; ++t)
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < half; ++i) {
          const float* b = &before[(t * heads + h) * hd];
          const float* a = &after[(t * heads + h) * hd];
          double ang = static_cast<double>(pos[t]) * inv[i];
          // (x1 + i x2) * e^{i ang}
          double re = b[i] * std::cos(ang) - b[i + half] * std::sin(ang);
          double im = b[i] * std::sin(ang) + b[i + half] * std::cos(ang);
          ASSERT_NEAR(a[i], re, 2e-4);
          ASSERT_NEAR(a[i + half], im, 2e-4);
        }
  };
  check(q0, q, nh);
  check(k0, k, nkv);
  // Position 0 is the identity.
  for (int i = 0; i < hd; ++i) EXPECT_EQ(q[i], q0[i]);
}

TEST(CpuOpsTest, SiluMulAndSoftmax) {
  const int rows = 2, inter = 11;
  auto gu = Random(rows * 2 * inter, 10, 2.0f);
  std::vector<float> out(rows * inter);
  SiluMul(gu.data(), rows, inter, out.data());
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < inter; ++i) {
      double g = gu[r * 2 * inter + i], u = gu[r * 2 * inter + inter + i];
      ASSERT_NEAR(out[r * inter + i], g / (1 + std::exp(-g)) * u, 1e-5);
    }

  auto x = Random(3 * 50, 11, 10.0f);
  auto y = x;
  Softmax(y.data(), 3, 50);
  for (int r = 0; r < 3; ++r) {
    double z = 0;
    for (int i = 0; i < 50; ++i) z += std::exp(static_cast<double>(x[r * 50 + i]));
    for (int i = 0; i < 50; ++i) ASSERT_NEAR(y[r * 50 + i], std::exp(x[r * 50 + i]) / z, 1e-6);
  }
}

// Dense causal GQA attention over contiguous K/V [len, kv_heads, hd], in double.
std::vector<double> NaiveAttention(const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v, int start, int n, int nh, int nkv,
                                   int hd) {
  std::vector<double> out(static_cast<size_t>(n) * nh * hd, 0.0);
  double scale = 1.0 / std::sqrt(hd);
  for (int t = 0; t < n; ++t)
    for (int h = 0; h < nh; ++h) {
      int kvh = h / (nh / nkv);
      int len = start + t + 1;
      std::vector<double> s(len);
      double mx = -1e300;
      for (int p = 0; p < len; ++p) {
        double d = 0;
        for (int i = 0; i < hd; ++i) d += q[(t * nh + h) * hd + i] * k[(p * nkv + kvh) * hd + i];
        s[p] = d * scale;
        mx = std::max(mx, s[p]);
      }
      double z = 0;
      for (double& e : s) z += (e = std::exp(e - mx));
      for (int p = 0; p < len; ++p)
        for (int i = 0; i < hd; ++i)
          out[(t * nh + h) * hd + i] += s[p] / z * v[(p * nkv + kvh) * hd + i];
    }
  return out;
}

TEST(CpuOpsTest, KvWriteAndPagedAttentionMatchDenseAttention) {
  ThreadPool pool(2);
  const int nh = 4, nkv = 2, hd = 12, bs = 4, num_blocks = 9;
  const int start = 6, n = 5, total = start + n;  // prefix of 6 cached, 5 new tokens
  std::vector<int32_t> table = {7, 2, 5};         // scattered physical blocks: 12 slots >= 11
  std::vector<float> kc(num_blocks * bs * nkv * hd, NAN), vc(kc.size(), NAN);
  PagedKv cache{kc.data(), vc.data(), num_blocks, bs, nkv, hd};
  auto k = Random(total * nkv * hd, 12);
  auto v = Random(total * nkv * hd, 13);
  auto q = Random(n * nh * hd, 14, 2.0f);
  // Write the prefix and the new tokens in two calls, as chunked prefill does.
  std::vector<int32_t> pos_a = {0, 1, 2, 3, 4, 5}, pos_b = {6, 7, 8, 9, 10};
  KvWrite(cache, table, pos_a, k.data(), v.data());
  KvWrite(cache, table, pos_b, k.data() + start * nkv * hd, v.data() + start * nkv * hd);
  // Slot of position 9: block table[2] = 5, offset 1.
  EXPECT_EQ(kc[(5 * bs + 1) * nkv * hd], k[9 * nkv * hd]);

  auto ref = NaiveAttention(q, k, v, start, n, nh, nkv, hd);
  for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
    std::vector<float> out(n * nh * hd, NAN);
    PagedAttention(cache, table, start, q.data(), n, nh, 1.0f / std::sqrt(float(hd)), out.data(),
                   p);
    for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 1e-5) << i;
  }
}

}  // namespace
}  // namespace ite::cpu

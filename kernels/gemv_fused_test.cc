// The work fused into products of 1-4 rows (GemmEpilogue, rms_norm_x) against the CPU reference
// of the operators they replace: RmsNorm, MatMul, SiluMul, Rope + the paged KV write, the
// residual add.
#include <algorithm>
#include <cmath>

#include "ite/kernels/gemm.h"
#include "ite/kernels/norm.h"
#include "test_util.h"
#include "worker/backend/cpu/cpu_ops.h"

namespace ite::kernels {
namespace {

using testing::DeviceBuffer;
using testing::Download16;
using testing::RandomVector;
using testing::RelError;
using testing::RoundTo;
using testing::Tolerance;
using testing::Upload16;
using testing::UploadRaw;

std::unique_ptr<GemmRunner> Runner(bool batch_invariant = false) {
  auto runner = GemmRunner::Create(32u << 20, batch_invariant);
  EXPECT_TRUE(runner.ok()) << runner.status().ToString();
  return runner.ok() ? std::move(*runner) : nullptr;
}

// x, a norm weight and w, rounded to dtype; `h` = cpu RmsNorm(x) * norm, the reference's input.
struct NormedInputs {
  std::vector<float> x, norm, w, bias, h;
  DeviceBuffer dx, dw, dbias, dnorm;
};

NormedInputs MakeNormed(int32_t m, int32_t n, int32_t k, DType dtype, std::mt19937& rng) {
  NormedInputs in;
  in.x = RandomVector(size_t(m) * k, rng, -3.0f, 3.0f);
  in.norm = RandomVector(k, rng, 0.5f, 1.5f);
  in.w = RandomVector(size_t(n) * k, rng, -0.1f, 0.1f);
  in.bias = RandomVector(n, rng);
  for (auto* v : {&in.x, &in.norm, &in.w, &in.bias}) RoundTo(*v, dtype);
  in.h.resize(in.x.size());
  cpu::RmsNorm(in.x.data(), in.norm.data(), m, k, 1e-5f, in.h.data());
  in.dx = Upload16(in.x, dtype);
  in.dw = Upload16(in.w, dtype);
  in.dbias = Upload16(in.bias, dtype);
  in.dnorm = Upload16(in.norm, dtype);
  return in;
}

TEST(GemvFused, NormalisedSiluMulMatchesNormMatMulSiluMul) {
  ITE_SKIP_WITHOUT_GPU();
  struct Case {
    int32_t m, inter, k;
  };
  // Llama-3.2-1B and Qwen2.5-0.5B widths, and narrow ones that split a unit over 2-8 warps.
  const Case cases[] = {{1, 8192, 2048}, {4, 4864, 896}, {3, 100, 72}, {2, 13, 24}, {1, 64, 2048}};
  auto runner = Runner();
  ASSERT_NE(runner, nullptr);
  std::mt19937 rng(5);
  for (const bool shared_x : {false, true}) {
    for (DType dtype : {DType::kBF16, DType::kF16}) {
      for (const Case& c : cases) {
        SCOPED_TRACE(::testing::Message() << "shared_x=" << shared_x << " " << DTypeName(dtype)
                                          << " m=" << c.m << " inter=" << c.inter << " k=" << c.k);
        const int32_t n = 2 * c.inter;
        NormedInputs in = MakeNormed(c.m, n, c.k, dtype, rng);
        std::vector<float> gate_up(size_t(c.m) * n), want(size_t(c.m) * c.inter);
        cpu::MatMul(in.h.data(), in.w.data(), nullptr, c.m, n, c.k, gate_up.data());
        cpu::SiluMul(gate_up.data(), c.m, c.inter, want.data());
        DeviceBuffer dout(want.size() * 2);
        dout.Poison();
        GemmArgs g{dtype, in.dx.get(), in.dw.get(), nullptr, dout.get(), false, c.m, n, c.k};
        g.epilogue = GemmEpilogue::kSiluMul;
        g.rms_norm_x = true;
        g.norm_weight = in.dnorm.get();
        g.eps = 1e-5f;
        g.shared_x = shared_x;
        ASSERT_TRUE(runner->Fuses(g));
        const Status st = runner->Run(g, nullptr);
        ASSERT_TRUE(st.ok()) << st.ToString();
        ITE_CUDA_OK(cudaDeviceSynchronize());
        const std::vector<float> got = Download16(dout, want.size(), dtype);
        EXPECT_EQ(testing::CountNonFinite(got), 0u);
        EXPECT_LT(RelError(got, want), 2 * Tolerance(dtype));
      }
    }
  }
}

TEST(GemvFused, NormalisedRopeKvMatchesNormMatMulRopeAndCacheWrite) {
  ITE_SKIP_WITHOUT_GPU();
  struct Case {
    int32_t m, heads, kv_heads, head_dim, k;
    bool bias;
  };
  // One row takes the pipelined kernel: k = 896 and 72 leave its lanes different piece counts.
  const Case cases[] = {{1, 32, 8, 64, 2048, false}, {1, 14, 2, 64, 896, true},
                        {1, 4, 1, 64, 72, false},    {4, 14, 2, 64, 896, true},
                        {3, 8, 8, 128, 256, false},  {2, 4, 1, 64, 72, true},
                        {4, 32, 8, 128, 4096, false}};
  auto runner = Runner();
  ASSERT_NE(runner, nullptr);
  std::mt19937 rng(9);
  for (const bool shared_x : {false, true}) {
    for (DType dtype : {DType::kBF16, DType::kF16}) {
      for (const Case& c : cases) {
        SCOPED_TRACE(::testing::Message()
                     << "shared_x=" << shared_x << " " << DTypeName(dtype) << " m=" << c.m
                     << " heads=" << c.heads << "/" << c.kv_heads << " hd=" << c.head_dim);
        const int32_t qd = c.heads * c.head_dim, kd = c.kv_heads * c.head_dim;
        const int32_t n = qd + 2 * kd;
        NormedInputs in = MakeNormed(c.m, n, c.k, dtype, rng);
        ModelConfig config;
        config.head_dim = c.head_dim;
        config.rope_theta = 500000.0f;
        const std::vector<float> inv_freq = cpu::RopeInvFreq(config);
        const int32_t block_size = 16, num_blocks = 4, num_slots = block_size * num_blocks;
        std::vector<int32_t> positions(c.m), slots(c.m);
        for (int32_t r = 0; r < c.m; ++r) {
          positions[r] = 17 + 1000 * r;
          slots[r] = (7 * r + 3) % num_slots;
        }
        if (c.m > 2) slots[1] = -1;  // a padding row: no cache write

        std::vector<float> qkv(size_t(c.m) * n);
        cpu::MatMul(in.h.data(), in.w.data(), c.bias ? in.bias.data() : nullptr, c.m, n, c.k,
                    qkv.data());
        std::vector<float> q(size_t(c.m) * qd), k(size_t(c.m) * kd), v(k.size());
        for (int32_t r = 0; r < c.m; ++r) {
          const float* row = qkv.data() + size_t(r) * n;
          std::copy(row, row + qd, q.begin() + size_t(r) * qd);
          std::copy(row + qd, row + qd + kd, k.begin() + size_t(r) * kd);
          std::copy(row + qd + kd, row + n, v.begin() + size_t(r) * kd);
        }
        cpu::Rope(q.data(), k.data(), positions, c.heads, c.kv_heads, c.head_dim, inv_freq);

        auto dpos = UploadRaw(positions), dslots = UploadRaw(slots), dfreq = UploadRaw(inv_freq);
        DeviceBuffer dk(size_t(num_slots) * kd * 2), dv(size_t(num_slots) * kd * 2);
        DeviceBuffer dout(qkv.size() * 2);
        dk.Poison();
        dv.Poison();
        dout.Poison();
        RopeKvWriteArgs rope;
        rope.positions = dpos.as<int32_t>();
        rope.slots = dslots.as<int32_t>();
        rope.inv_freq = dfreq.as<float>();
        rope.num_heads = c.heads;
        rope.num_kv_heads = c.kv_heads;
        rope.head_dim = c.head_dim;
        rope.cache =
            PagedKvCache{dk.get(), dv.get(), dtype, num_blocks, block_size, c.kv_heads, c.head_dim};
        GemmArgs g{dtype,      in.dx.get(), in.dw.get(), c.bias ? in.dbias.get() : nullptr,
                   dout.get(), false,       c.m,         n,
                   c.k};
        g.epilogue = GemmEpilogue::kRopeKv;
        g.rms_norm_x = true;
        g.norm_weight = in.dnorm.get();
        g.eps = 1e-5f;
        g.rope = &rope;
        g.shared_x = shared_x;
        ASSERT_TRUE(runner->Fuses(g));
        const Status st = runner->Run(g, nullptr);
        ASSERT_TRUE(st.ok()) << st.ToString();
        ITE_CUDA_OK(cudaDeviceSynchronize());

        const std::vector<float> out = Download16(dout, qkv.size(), dtype);
        const std::vector<float> out_k = Download16(dk, size_t(num_slots) * kd, dtype);
        const std::vector<float> out_v = Download16(dv, size_t(num_slots) * kd, dtype);
        std::vector<float> got_q, got_k, got_v, want_k, want_v;
        for (int32_t r = 0; r < c.m; ++r) {
          got_q.insert(got_q.end(), out.begin() + size_t(r) * n, out.begin() + size_t(r) * n + qd);
          if (slots[r] < 0) continue;
          const size_t s = size_t(slots[r]) * kd;
          got_k.insert(got_k.end(), out_k.begin() + s, out_k.begin() + s + kd);
          got_v.insert(got_v.end(), out_v.begin() + s, out_v.begin() + s + kd);
          want_k.insert(want_k.end(), k.begin() + size_t(r) * kd, k.begin() + size_t(r + 1) * kd);
          want_v.insert(want_v.end(), v.begin() + size_t(r) * kd, v.begin() + size_t(r + 1) * kd);
        }
        EXPECT_EQ(testing::CountNonFinite(got_q) + testing::CountNonFinite(got_k) +
                      testing::CountNonFinite(got_v),
                  0u);
        EXPECT_LT(RelError(got_q, q), 2 * Tolerance(dtype));
        EXPECT_LT(RelError(got_k, want_k), 2 * Tolerance(dtype));
        EXPECT_LT(RelError(got_v, want_v), 2 * Tolerance(dtype));
        // Nothing written outside the rows' slots (the padding row's slot included).
        size_t written = 0;
        for (float x : out_k) written += std::isfinite(x);
        EXPECT_EQ(written, got_k.size());
      }
    }
  }
}

// out += x w^T (+ bias), through the weight-streaming kernel (m <= 4) and cuBLASLt (beta = 1).
TEST(GemvFused, AccumulateAddsTheProductToOut) {
  ITE_SKIP_WITHOUT_GPU();
  struct Case {
    int32_t m, n, k;
    bool bias;
  };
  // {1, 2048, 8192}: a down product, whose x takes every thread four pieces to stage.
  const Case cases[] = {{1, 2048, 2048, false}, {1, 2048, 8192, false}, {2, 2048, 8192, true},
                        {4, 100, 72, false},    {3, 13, 24, true},      {7, 896, 896, false},
                        {64, 2048, 1024, true}};
  for (const bool shared_x : {false, true}) {
    for (bool invariant : {false, true}) {
      auto runner = Runner(invariant);
      ASSERT_NE(runner, nullptr);
      std::mt19937 rng(13);
      for (const Case& c : cases) {
        SCOPED_TRACE(::testing::Message() << "shared_x=" << shared_x << " invariant=" << invariant
                                          << " m=" << c.m << " n=" << c.n << " k=" << c.k);
        std::vector<float> x = RandomVector(size_t(c.m) * c.k, rng);
        std::vector<float> w = RandomVector(size_t(c.n) * c.k, rng, -0.1f, 0.1f);
        std::vector<float> bias = RandomVector(c.n, rng);
        std::vector<float> residual = RandomVector(size_t(c.m) * c.n, rng, -4.0f, 4.0f);
        for (auto* v : {&x, &w, &bias, &residual}) RoundTo(*v, DType::kBF16);
        std::vector<float> want(residual.size());
        cpu::MatMul(x.data(), w.data(), c.bias ? bias.data() : nullptr, c.m, c.n, c.k, want.data());
        for (size_t i = 0; i < want.size(); ++i) want[i] += residual[i];
        auto dx = Upload16(x, DType::kBF16), dw = Upload16(w, DType::kBF16);
        auto dbias = Upload16(bias, DType::kBF16), dres = Upload16(residual, DType::kBF16);
        GemmArgs g{DType::kBF16, dx.get(), dw.get(), c.bias ? dbias.get() : nullptr,
                   dres.get(),   false,    c.m,      c.n,
                   c.k};
        g.epilogue = GemmEpilogue::kAccumulate;
        g.shared_x = shared_x;
        const Status st = runner->Run(g, nullptr);
        ASSERT_TRUE(st.ok()) << st.ToString();
        ITE_CUDA_OK(cudaDeviceSynchronize());
        const std::vector<float> got = Download16(dres, want.size(), DType::kBF16);
        EXPECT_EQ(testing::CountNonFinite(got), 0u);
        EXPECT_LT(RelError(got, want), Tolerance(DType::kBF16));
      }
    }
  }
}

// Without a norm, x in shared memory changes where x is read from, not the order of any sum:
// the products are the same bit for bit (fp32 logits, pipelined at one row, and bf16 stores),
// at the largest x that fits (12,032 floats), where x does not fit (12,288 floats: with the
// kernel's own shared arrays, more than a block gets unasked) and at several rows, which always
// read x from global memory.
TEST(GemvFused, SharedXGivesTheSameBits) {
  ITE_SKIP_WITHOUT_GPU();
  struct Case {
    int32_t m, n, k;
  };
  const Case cases[] = {{1, 4096, 2048}, {1, 2048, 8192}, {2, 512, 2048}, {4, 96, 3072},
                        {1, 300, 24},    {2, 64, 8192},   {1, 40, 12032}, {1, 40, 12288}};
  auto runner = Runner();
  ASSERT_NE(runner, nullptr);
  std::mt19937 rng(21);
  for (const bool f32 : {true, false}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(::testing::Message()
                   << "f32=" << f32 << " m=" << c.m << " n=" << c.n << " k=" << c.k);
      std::vector<float> x = RandomVector(size_t(c.m) * c.k, rng, -2.0f, 2.0f);
      std::vector<float> w = RandomVector(size_t(c.n) * c.k, rng, -0.1f, 0.1f);
      RoundTo(x, DType::kBF16);
      RoundTo(w, DType::kBF16);
      auto dx = Upload16(x, DType::kBF16), dw = Upload16(w, DType::kBF16);
      const size_t out_bytes = size_t(c.m) * c.n * (f32 ? 4 : 2);
      std::vector<std::vector<char>> got;
      for (const bool shared_x : {false, true}) {
        DeviceBuffer dout(out_bytes);
        dout.Poison();
        GemmArgs g{DType::kBF16, dx.get(), dw.get(), nullptr, dout.get(), f32, c.m, c.n, c.k};
        g.shared_x = shared_x;
        const Status st = runner->Run(g, nullptr);
        ASSERT_TRUE(st.ok()) << st.ToString();
        ITE_CUDA_OK(cudaDeviceSynchronize());
        got.emplace_back(out_bytes);
        ITE_CUDA_OK(cudaMemcpy(got.back().data(), dout.get(), out_bytes, cudaMemcpyDeviceToHost));
      }
      EXPECT_EQ(got[0], got[1]);
    }
  }
  // And the products are right: one of the shared cases against the CPU.
  std::vector<float> x = RandomVector(2048, rng), w = RandomVector(size_t(256) * 2048, rng);
  RoundTo(x, DType::kBF16);
  RoundTo(w, DType::kBF16);
  std::vector<float> want(256);
  cpu::MatMul(x.data(), w.data(), nullptr, 1, 256, 2048, want.data());
  auto dx = Upload16(x, DType::kBF16), dw = Upload16(w, DType::kBF16);
  DeviceBuffer dout(256 * 4);
  GemmArgs g{DType::kBF16, dx.get(), dw.get(), nullptr, dout.get(), true, 1, 256, 2048};
  g.shared_x = true;
  ASSERT_TRUE(runner->Run(g, nullptr).ok());
  std::vector<float> got(256);
  ITE_CUDA_OK(cudaMemcpy(got.data(), dout.get(), 256 * 4, cudaMemcpyDeviceToHost));
  EXPECT_LT(RelError(got, want), 1e-4);
}

// A capped grid (GemmArgs::max_blocks_per_sm) changes which block computes a unit, not how: the
// same bits as one block per group of units, for plain fp32 / bf16 stores, residual adds and the
// normalised silu * mul, at 1-4 rows, with x in shared memory or not, where each block takes
// several groups (8,192 units on 132-odd multiprocessors) and where warps share a unit (n = 256,
// k = 8,192: eight warps a unit).
TEST(GemvFused, CappedGridGivesTheSameBits) {
  ITE_SKIP_WITHOUT_GPU();
  struct Case {
    int32_t m, n, k;
    GemmEpilogue epilogue;
    bool f32;
  };
  const Case cases[] = {{1, 8192, 2048, GemmEpilogue::kStore, true},
                        {1, 256, 8192, GemmEpilogue::kStore, false},
                        {3, 8192, 512, GemmEpilogue::kStore, false},
                        {1, 4096, 2048, GemmEpilogue::kAccumulate, false},
                        {4, 2048, 1024, GemmEpilogue::kAccumulate, false},
                        {1, 16384, 2048, GemmEpilogue::kSiluMul, false},
                        {2, 2048, 896, GemmEpilogue::kSiluMul, false}};
  auto runner = Runner();
  ASSERT_NE(runner, nullptr);
  std::mt19937 rng(33);
  for (const Case& c : cases) {
    const bool silu = c.epilogue == GemmEpilogue::kSiluMul;
    NormedInputs in = MakeNormed(c.m, c.n, c.k, DType::kBF16, rng);
    const int32_t width = silu ? c.n / 2 : c.n;
    const size_t out_bytes = size_t(c.m) * width * (c.f32 ? 4 : 2);
    std::vector<float> residual = RandomVector(size_t(c.m) * width, rng, -4.0f, 4.0f);
    RoundTo(residual, DType::kBF16);
    for (const bool shared_x : {false, true}) {
      std::vector<std::vector<char>> got;
      for (const int32_t cap : {0, 1, 3}) {
        SCOPED_TRACE(::testing::Message() << "m=" << c.m << " n=" << c.n << " k=" << c.k
                                          << " epilogue=" << int(c.epilogue)
                                          << " shared_x=" << shared_x << " cap=" << cap);
        DeviceBuffer dout = c.epilogue == GemmEpilogue::kAccumulate
                                ? Upload16(residual, DType::kBF16)
                                : DeviceBuffer(out_bytes);
        if (c.epilogue != GemmEpilogue::kAccumulate) dout.Poison();
        GemmArgs g{DType::kBF16, in.dx.get(), in.dw.get(), nullptr, dout.get(),
                   c.f32,        c.m,         c.n,         c.k};
        g.epilogue = c.epilogue;
        g.rms_norm_x = silu;
        g.norm_weight = silu ? in.dnorm.get() : nullptr;
        g.eps = 1e-5f;
        g.shared_x = shared_x;
        g.max_blocks_per_sm = cap;
        const Status st = runner->Run(g, nullptr);
        ASSERT_TRUE(st.ok()) << st.ToString();
        ITE_CUDA_OK(cudaDeviceSynchronize());
        got.emplace_back(out_bytes);
        ITE_CUDA_OK(cudaMemcpy(got.back().data(), dout.get(), out_bytes, cudaMemcpyDeviceToHost));
        EXPECT_EQ(got.back(), got.front());
      }
    }
  }
}

// The fusions that only the weight-streaming kernel has are refused where it does not run.
TEST(GemvFused, FusedEpiloguesOnlyForFewRowsOutsideBatchInvariantMode) {
  ITE_SKIP_WITHOUT_GPU();
  auto runner = Runner(), invariant = Runner(/*batch_invariant=*/true);
  ASSERT_NE(runner, nullptr);
  ASSERT_NE(invariant, nullptr);
  std::mt19937 rng(2);
  NormedInputs in = MakeNormed(8, 64, 64, DType::kBF16, rng);
  DeviceBuffer dout(8 * 32 * 2);
  GemmArgs g{DType::kBF16, in.dx.get(), in.dw.get(), nullptr, dout.get(), false, 1, 64, 64};
  g.epilogue = GemmEpilogue::kSiluMul;
  g.rms_norm_x = true;
  g.norm_weight = in.dnorm.get();
  EXPECT_TRUE(runner->Fuses(g));
  EXPECT_FALSE(invariant->Fuses(g));
  EXPECT_EQ(invariant->Run(g, nullptr).code(), StatusCode::kInvalidArgument);
  g.m = 8;
  EXPECT_FALSE(runner->Fuses(g));
  const Status st = runner->Run(g, nullptr);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("fused only"), std::string::npos) << st.message();
  g.m = 1;
  g.rms_norm_x = false;  // silu * mul exists only with the norm
  EXPECT_FALSE(runner->Fuses(g));
}

// RmsNorm over gathered rows (the logit rows of a step).
TEST(GemvFused, RmsNormGathersRows) {
  ITE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(4);
  const int32_t rows = 9, dim = 896;
  std::vector<float> x = RandomVector(size_t(rows) * dim, rng, -2.0f, 2.0f);
  std::vector<float> weight = RandomVector(dim, rng, 0.5f, 1.5f);
  RoundTo(x, DType::kBF16);
  RoundTo(weight, DType::kBF16);
  const std::vector<int32_t> pick = {8, 0, 3};
  auto dx = Upload16(x, DType::kBF16), dw = Upload16(weight, DType::kBF16);
  auto dpick = UploadRaw(pick);
  std::vector<float> want(pick.size() * dim);
  for (size_t r = 0; r < pick.size(); ++r) {
    cpu::RmsNorm(x.data() + size_t(pick[r]) * dim, weight.data(), 1, dim, 1e-6f,
                 want.data() + r * dim);
  }
  DeviceBuffer dout(want.size() * 2);
  dout.Poison();
  RmsNormArgs a;
  a.x = dx.get();
  a.weight = dw.get();
  a.out = dout.get();
  a.rows = static_cast<int32_t>(pick.size());
  a.dim = dim;
  a.eps = 1e-6f;
  a.row_index = dpick.as<int32_t>();
  ASSERT_TRUE(RmsNorm(a, nullptr).ok());
  ITE_CUDA_OK(cudaDeviceSynchronize());
  const std::vector<float> got = Download16(dout, want.size(), DType::kBF16);
  EXPECT_LT(RelError(got, want), Tolerance(DType::kBF16));
}

}  // namespace
}  // namespace ite::kernels

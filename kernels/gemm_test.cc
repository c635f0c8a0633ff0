// GemmRunner (cuBLASLt) against cpu::MatMul on random inputs.
#include "ite/kernels/gemm.h"

#include <cstring>

#include "test_util.h"
#include "worker/backend/cpu/cpu_ops.h"

namespace ite::kernels {
namespace {

using testing::DeviceBuffer;
using testing::Download16;
using testing::DownloadRaw;
using testing::RandomVector;
using testing::RelError;
using testing::RoundTo;
using testing::Tolerance;
using testing::Upload16;

struct Shape {
  int32_t m, n, k;
  bool bias, out_f32;
};

TEST(GemmKernel, MatchesCpuMatMul) {
  ITE_SKIP_WITHOUT_GPU();
  // m <= 4 runs the weight-streaming kernel (k below, at and past one warp's 256-element round,
  // n not a multiple of its 8 columns per block, 1, 2 and 8 warps per column; one row of fp32
  // logits pipelined), larger m cuBLASLt.
  const Shape shapes[] = {
      {1, 1024, 576, false, false},  {7, 1536, 576, true, false},  {64, 2048, 1024, false, false},
      {33, 100, 72, true, false},    {17, 5000, 576, false, true}, {1, 4096, 4096, false, false},
      {2, 2048, 8192, false, false}, {3, 899, 896, true, false},   {4, 32003, 2048, false, true},
      {4, 100, 72, true, false},     {1, 13, 24, false, true},     {1, 256, 4096, true, false},
      {1, 50000, 2048, false, true}, {1, 301, 904, false, true}};
  auto runner_or = GemmRunner::Create();
  ASSERT_TRUE(runner_or.ok()) << runner_or.status().ToString();
  GemmRunner& runner = **runner_or;
  std::mt19937 rng(7);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (const Shape& s : shapes) {
      SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " m=" << s.m << " n=" << s.n << " k="
                                        << s.k << " bias=" << s.bias << " out_f32=" << s.out_f32);
      std::vector<float> x = RandomVector(size_t(s.m) * s.k, rng);
      std::vector<float> w = RandomVector(size_t(s.n) * s.k, rng, -0.1f, 0.1f);
      std::vector<float> bias = RandomVector(s.n, rng);
      RoundTo(x, dtype);
      RoundTo(w, dtype);
      RoundTo(bias, dtype);
      std::vector<float> ref(size_t(s.m) * s.n);
      cpu::MatMul(x.data(), w.data(), s.bias ? bias.data() : nullptr, s.m, s.n, s.k, ref.data());
      auto dx = Upload16(x, dtype), dw = Upload16(w, dtype), dbias = Upload16(bias, dtype);
      DeviceBuffer dout(ref.size() * (s.out_f32 ? 4 : 2));
      for (int rep = 0; rep < 2; ++rep) {  // the second run uses the cached plan
        dout.Poison();
        GemmArgs args{dtype,      dx.get(),  dw.get(), s.bias ? dbias.get() : nullptr,
                      dout.get(), s.out_f32, s.m,      s.n,
                      s.k};
        const Status st = runner.Run(args, nullptr);
        ASSERT_TRUE(st.ok()) << st.ToString();
        ITE_CUDA_OK(cudaDeviceSynchronize());
        std::vector<float> out =
            s.out_f32 ? DownloadRaw<float>(dout, ref.size()) : Download16(dout, ref.size(), dtype);
        EXPECT_EQ(testing::CountNonFinite(out), 0u);
        EXPECT_LT(RelError(out, ref), Tolerance(dtype));
      }
    }
  }
  size_t tiled = 0;
  for (const Shape& s : shapes) tiled += s.m > 4;
  EXPECT_EQ(runner.cached_plans(), 2 * tiled);
}

// The same rows give bit-identical results whatever else shares the product, in batch-invariant
// mode; the default mode is allowed to differ (and on an H200 does for some of these m).
TEST(GemmKernel, BatchInvariantRowsAgreeBitForBitAcrossM) {
  ITE_SKIP_WITHOUT_GPU();
  auto runner_or = GemmRunner::Create(32u << 20, /*batch_invariant=*/true);
  ASSERT_TRUE(runner_or.ok()) << runner_or.status().ToString();
  GemmRunner& runner = **runner_or;
  struct Weight {
    int32_t n, k;
    bool bias, out_f32;
  };
  const Weight weights[] = {{3072, 2048, false, false},
                            {2048, 8192, false, false},
                            {896, 896, true, false},
                            {32000, 2048, false, true}};
  const int32_t ms[] = {1, 2, 7, 16, 65, 300, 2048};
  constexpr int32_t kMaxM = 2048;
  std::mt19937 rng(11);
  for (const Weight& wt : weights) {
    SCOPED_TRACE(::testing::Message() << "n=" << wt.n << " k=" << wt.k);
    std::vector<float> x = RandomVector(size_t(kMaxM) * wt.k, rng);
    std::vector<float> w = RandomVector(size_t(wt.n) * wt.k, rng, -0.1f, 0.1f);
    std::vector<float> bias = RandomVector(wt.n, rng);
    auto dx = Upload16(x, DType::kBF16), dw = Upload16(w, DType::kBF16);
    auto dbias = Upload16(bias, DType::kBF16);
    const size_t elem = wt.out_f32 ? 4 : 2;
    DeviceBuffer dout(size_t(kMaxM) * wt.n * elem);
    // Every row of an m-row product against the same row of the largest product.
    GemmArgs full{DType::kBF16, dx.get(),   dw.get(), wt.bias ? dbias.get() : nullptr,
                  dout.get(),   wt.out_f32, kMaxM,    wt.n,
                  wt.k};
    ASSERT_TRUE(runner.Run(full, nullptr).ok());
    ITE_CUDA_OK(cudaDeviceSynchronize());
    const std::vector<uint8_t> largest = DownloadRaw<uint8_t>(dout, size_t(kMaxM) * wt.n * elem);
    for (int32_t m : ms) {
      dout.Poison();
      GemmArgs args{DType::kBF16, dx.get(),   dw.get(), wt.bias ? dbias.get() : nullptr,
                    dout.get(),   wt.out_f32, m,        wt.n,
                    wt.k};
      const Status st = runner.Run(args, nullptr);
      ASSERT_TRUE(st.ok()) << st.ToString();
      ITE_CUDA_OK(cudaDeviceSynchronize());
      std::vector<uint8_t> out = DownloadRaw<uint8_t>(dout, size_t(m) * wt.n * elem);
      EXPECT_EQ(std::memcmp(out.data(), largest.data(), out.size()), 0)
          << "m=" << m << ": rows differ from the same rows of the m=" << kMaxM << " product";
    }
  }
}

TEST(GemmKernel, RejectsBiasWithF32Output) {
  ITE_SKIP_WITHOUT_GPU();
  auto runner = GemmRunner::Create(0);
  ASSERT_TRUE(runner.ok());
  int dummy = 0;
  GemmArgs args{DType::kBF16, &dummy, &dummy, &dummy, &dummy, true, 1, 1, 1};
  EXPECT_EQ((*runner)->Run(args, nullptr).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ite::kernels

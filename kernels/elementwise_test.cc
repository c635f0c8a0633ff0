// SiluMul, Softmax and Embedding against the CPU reference on random inputs.
#include <algorithm>
#include <cmath>

#include "ite/kernels/activation.h"
#include "ite/kernels/embedding.h"
#include "ite/kernels/softmax.h"
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
using testing::UploadRaw;

TEST(ElementwiseKernel, SiluMulMatchesCpu) {
  ITE_SKIP_WITHOUT_GPU();
  struct Shape {
    int32_t rows, inter;
  };
  const Shape shapes[] = {{1, 1536}, {7, 1000}, {64, 8192}, {33, 14336}, {3, 5}};
  std::mt19937 rng(4);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (const Shape& s : shapes) {
      SCOPED_TRACE(::testing::Message()
                   << DTypeName(dtype) << " rows=" << s.rows << " inter=" << s.inter);
      std::vector<float> gu = RandomVector(size_t(s.rows) * 2 * s.inter, rng, -4.0f, 4.0f);
      RoundTo(gu, dtype);
      std::vector<float> ref(size_t(s.rows) * s.inter);
      cpu::SiluMul(gu.data(), s.rows, s.inter, ref.data());
      auto dgu = Upload16(gu, dtype);
      DeviceBuffer dout(ref.size() * 2);
      dout.Poison();
      ASSERT_TRUE(SiluMul(dtype, dgu.get(), s.rows, s.inter, dout.get(), nullptr).ok());
      ITE_CUDA_OK(cudaDeviceSynchronize());
      std::vector<float> out = Download16(dout, ref.size(), dtype);
      EXPECT_EQ(testing::CountNonFinite(out), 0u);
      EXPECT_LT(RelError(out, ref), Tolerance(dtype));
    }
  }
}

TEST(ElementwiseKernel, SoftmaxMatchesCpu) {
  ITE_SKIP_WITHOUT_GPU();
  struct Shape {
    int32_t rows, n;
  };
  const Shape shapes[] = {{1, 128256}, {64, 1000}, {5, 7}, {17, 32000}};
  std::mt19937 rng(5);
  for (const Shape& s : shapes) {
    SCOPED_TRACE(::testing::Message() << "rows=" << s.rows << " n=" << s.n);
    std::vector<float> x = RandomVector(size_t(s.rows) * s.n, rng, -20.0f, 20.0f);
    // float64 reference: cpu::Softmax sums 128k floats in order, which alone is off by ~5e-5.
    std::vector<float> ref(x.size());
    for (int32_t r = 0; r < s.rows; ++r) {
      const float* xr = x.data() + size_t(r) * s.n;
      double mx = *std::max_element(xr, xr + s.n), z = 0.0;
      for (int32_t i = 0; i < s.n; ++i) z += std::exp(double(xr[i]) - mx);
      for (int32_t i = 0; i < s.n; ++i)
        ref[size_t(r) * s.n + i] = float(std::exp(double(xr[i]) - mx) / z);
    }
    std::vector<float> cpu_ref = x;
    cpu::Softmax(cpu_ref.data(), s.rows, s.n);
    EXPECT_LT(RelError(cpu_ref, ref), 1e-3);  // the CPU op agrees too, at its own precision
    auto dx = UploadRaw(x);
    DeviceBuffer dout(x.size() * 4);
    dout.Poison();
    ASSERT_TRUE(Softmax(dx.as<float>(), s.rows, s.n, dout.as<float>(), nullptr).ok());
    ITE_CUDA_OK(cudaDeviceSynchronize());
    std::vector<float> out = DownloadRaw<float>(dout, x.size());
    EXPECT_EQ(testing::CountNonFinite(out), 0u);
    EXPECT_LT(RelError(out, ref), 1e-5);
  }
}

TEST(ElementwiseKernel, EmbeddingMatchesCpu) {
  ITE_SKIP_WITHOUT_GPU();
  struct Shape {
    int32_t vocab, dim, n;
  };
  const Shape shapes[] = {{1000, 576, 1}, {5000, 4096, 64}, {300, 100, 17}};
  std::mt19937 rng(6);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (const Shape& s : shapes) {
      SCOPED_TRACE(::testing::Message()
                   << DTypeName(dtype) << " vocab=" << s.vocab << " dim=" << s.dim << " n=" << s.n);
      std::vector<float> table = RandomVector(size_t(s.vocab) * s.dim, rng);
      RoundTo(table, dtype);
      std::vector<int32_t> ids(s.n);
      std::uniform_int_distribution<int32_t> id_dist(0, s.vocab - 1);
      for (int32_t& id : ids) id = id_dist(rng);
      std::vector<float> ref(size_t(s.n) * s.dim);
      cpu::Embedding(table.data(), s.dim, ids, ref.data());
      if (s.n > 2) {  // an out-of-range id gives a zero row
        ids[2] = s.vocab;
        std::fill(ref.begin() + 2 * s.dim, ref.begin() + 3 * s.dim, 0.0f);
      }
      auto dtable = Upload16(table, dtype);
      auto dids = UploadRaw(ids);
      DeviceBuffer dout(ref.size() * 2);
      dout.Poison();
      ASSERT_TRUE(Embedding(dtype, dtable.get(), s.vocab, s.dim, dids.as<int32_t>(), s.n,
                            dout.get(), nullptr)
                      .ok());
      ITE_CUDA_OK(cudaDeviceSynchronize());
      EXPECT_EQ(RelError(Download16(dout, ref.size(), dtype), ref), 0.0);
    }
  }
}

}  // namespace
}  // namespace ite::kernels

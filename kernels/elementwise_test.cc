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

// Row softmax in float64; -inf entries give 0. Meant for rows with a finite max.
std::vector<float> SoftmaxReference(const std::vector<float>& x, int32_t rows, int32_t n) {
  std::vector<float> ref(x.size());
  for (int32_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + size_t(r) * n;
    double mx = *std::max_element(xr, xr + n), z = 0.0;
    for (int32_t i = 0; i < n; ++i) z += std::exp(double(xr[i]) - mx);
    for (int32_t i = 0; i < n; ++i)
      ref[size_t(r) * n + i] = float(std::exp(double(xr[i]) - mx) / z);
  }
  return ref;
}

// Shapes reach every path of the launcher: one block holding the row in registers (n <= 8192
// with 8 float4 per thread, <= 16384 with 16), a cluster of 2 to 16 such blocks on sm_90 (up to
// 131072 with 8, 262144 with 16; the 40-row case needs more than one wave of clusters), and the
// two-pass kernel (odd widths, n past 262144, and the wide rows of pre-sm_90 devices).
TEST(ElementwiseKernel, SoftmaxMatchesCpu) {
  ITE_SKIP_WITHOUT_GPU();
  struct Shape {
    int32_t rows, n;
  };
  const Shape shapes[] = {{1, 128256}, {40, 128256}, {64, 1000}, {5, 7},
                          {17, 32000}, {8, 8192},    {3, 8196},  {4, 16384},
                          {2, 200000}, {2, 300000},  {3, 50257}, {2, 4}};
  std::mt19937 rng(5);
  for (const Shape& s : shapes) {
    SCOPED_TRACE(::testing::Message() << "rows=" << s.rows << " n=" << s.n);
    std::vector<float> x = RandomVector(size_t(s.rows) * s.n, rng, -20.0f, 20.0f);
    // float64 reference: cpu::Softmax sums 128k floats in order, which alone is off by ~5e-5.
    const std::vector<float> ref = SoftmaxReference(x, s.rows, s.n);
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
    // In place (out aliases x), as the header allows.
    ASSERT_TRUE(Softmax(dx.as<float>(), s.rows, s.n, dx.as<float>(), nullptr).ok());
    ITE_CUDA_OK(cudaDeviceSynchronize());
    EXPECT_LT(RelError(DownloadRaw<float>(dx, x.size()), ref), 1e-5) << "in place";
  }
}

// Rows that start off a 16-byte boundary take the scalar two-pass kernel even at n % 4 == 0.
TEST(ElementwiseKernel, SoftmaxUnalignedRows) {
  ITE_SKIP_WITHOUT_GPU();
  const int32_t rows = 3, n = 4096;
  std::mt19937 rng(15);
  std::vector<float> x = RandomVector(size_t(rows) * n, rng, -20.0f, 20.0f);
  const std::vector<float> ref = SoftmaxReference(x, rows, n);
  std::vector<float> padded(x.size() + 1, 0.0f);
  std::copy(x.begin(), x.end(), padded.begin() + 1);
  auto dx = UploadRaw(padded);
  DeviceBuffer dout((x.size() + 1) * 4);
  dout.Poison();
  ASSERT_TRUE(Softmax(dx.as<float>() + 1, rows, n, dout.as<float>() + 1, nullptr).ok());
  ITE_CUDA_OK(cudaDeviceSynchronize());
  std::vector<float> out = DownloadRaw<float>(dout, x.size() + 1);
  out.erase(out.begin());
  EXPECT_LT(RelError(out, ref), 1e-5);
}

// -inf entries (masked tokens) get exactly 0, also where whole blocks of a cluster see only
// -inf, and where the row max is so negative that exp(-max) overflows. A row holding NaN or
// +inf, or only -inf, comes out all NaN, on every path.
TEST(ElementwiseKernel, SoftmaxSpecialValues) {
  ITE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(16);
  for (int32_t n : {1000, 16384, 128256, 200000, 50257}) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    constexpr int32_t kRows = 5;
    std::vector<float> x = RandomVector(size_t(kRows) * n, rng, -20.0f, 20.0f);
    auto row = [&](int32_t r) { return x.data() + size_t(r) * n; };
    std::uniform_int_distribution<int32_t> pos(0, n - 1);
    for (int32_t i = 0; i < n; ++i) {
      row(1)[i] -= 200.0f;  // row 1 sits near -200: exp(0 - max) overflows float
      for (int32_t r : {0, 1}) {
        if (i < n / 2 || rng() % 4 == 0) row(r)[i] = -INFINITY;
      }
      row(4)[i] = -INFINITY;
    }
    row(0)[n - 1] = 3.0f;  // at least one finite entry
    row(1)[n - 1] = -195.0f;
    row(2)[pos(rng)] = NAN;
    row(3)[pos(rng)] = INFINITY;
    auto dx = UploadRaw(x);
    DeviceBuffer dout(x.size() * 4);
    dout.Poison();
    ASSERT_TRUE(Softmax(dx.as<float>(), kRows, n, dout.as<float>(), nullptr).ok());
    ITE_CUDA_OK(cudaDeviceSynchronize());
    const std::vector<float> out = DownloadRaw<float>(dout, x.size());
    for (int32_t r : {0, 1}) {
      const std::vector<float> xr(row(r), row(r) + n);
      const std::vector<float> ref = SoftmaxReference(xr, 1, n);
      const std::vector<float> got(out.begin() + size_t(r) * n, out.begin() + size_t(r + 1) * n);
      EXPECT_EQ(testing::CountNonFinite(got), 0u) << "row " << r;
      EXPECT_LT(RelError(got, ref), 1e-5) << "row " << r;
      for (int32_t i = 0; i < n; ++i) {
        if (xr[i] == -INFINITY) {
          ASSERT_EQ(got[i], 0.0f) << "row " << r << " index " << i;
        }
      }
    }
    for (int32_t r : {2, 3, 4}) {
      for (int32_t i = 0; i < n; ++i) {
        ASSERT_TRUE(std::isnan(out[size_t(r) * n + i])) << "row " << r << " index " << i;
      }
    }
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

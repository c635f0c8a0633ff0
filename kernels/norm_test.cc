// RmsNorm / AddRmsNorm against cpu::RmsNorm / cpu::AddRmsNorm on random inputs.
#include "ite/kernels/norm.h"

#include "test_util.h"
#include "worker/backend/cpu/cpu_ops.h"

namespace ite::kernels {
namespace {

using testing::Download16;
using testing::RandomVector;
using testing::RelError;
using testing::RoundTo;
using testing::Tolerance;
using testing::Upload16;

struct Shape {
  int32_t rows, dim;
};
const Shape kShapes[] = {{1, 64}, {7, 576}, {33, 4096}, {64, 1000}, {5, 8192}, {3, 7}};

TEST(NormKernel, RmsNormMatchesCpu) {
  ITE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(1);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (const Shape& s : kShapes) {
      SCOPED_TRACE(::testing::Message()
                   << DTypeName(dtype) << " rows=" << s.rows << " dim=" << s.dim);
      std::vector<float> x = RandomVector(size_t(s.rows) * s.dim, rng, -2.0f, 2.0f);
      std::vector<float> w = RandomVector(s.dim, rng, 0.5f, 1.5f);
      RoundTo(x, dtype);
      RoundTo(w, dtype);
      std::vector<float> ref(x.size());
      cpu::RmsNorm(x.data(), w.data(), s.rows, s.dim, 1e-5f, ref.data());
      auto dx = Upload16(x, dtype), dw = Upload16(w, dtype);
      testing::DeviceBuffer dout(x.size() * 2);
      dout.Poison();
      RmsNormArgs args{dtype, dx.get(), dw.get(), dout.get(), s.rows, s.dim, 1e-5f};
      ASSERT_TRUE(RmsNorm(args, nullptr).ok());
      ITE_CUDA_OK(cudaDeviceSynchronize());
      std::vector<float> out = Download16(dout, x.size(), dtype);
      EXPECT_EQ(testing::CountNonFinite(out), 0u);
      EXPECT_LT(RelError(out, ref), Tolerance(dtype));
      // In place (out aliases x).
      args.out = dx.get();
      ASSERT_TRUE(RmsNorm(args, nullptr).ok());
      ITE_CUDA_OK(cudaDeviceSynchronize());
      EXPECT_LT(RelError(Download16(dx, x.size(), dtype), ref), Tolerance(dtype));
    }
  }
}

TEST(NormKernel, AddRmsNormMatchesCpu) {
  ITE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(2);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (const Shape& s : kShapes) {
      SCOPED_TRACE(::testing::Message()
                   << DTypeName(dtype) << " rows=" << s.rows << " dim=" << s.dim);
      std::vector<float> x = RandomVector(size_t(s.rows) * s.dim, rng, -2.0f, 2.0f);
      std::vector<float> res = RandomVector(x.size(), rng, -2.0f, 2.0f);
      std::vector<float> w = RandomVector(s.dim, rng, 0.5f, 1.5f);
      RoundTo(x, dtype);
      RoundTo(res, dtype);
      RoundTo(w, dtype);
      auto dx = Upload16(x, dtype), dres = Upload16(res, dtype), dw = Upload16(w, dtype);
      std::vector<float> ref(x.size());
      cpu::AddRmsNorm(res.data(), x.data(), w.data(), s.rows, s.dim, 1e-5f, ref.data());
      testing::DeviceBuffer dout(x.size() * 2);
      dout.Poison();
      RmsNormArgs args{dtype, dx.get(), dw.get(), dout.get(), s.rows, s.dim, 1e-5f};
      ASSERT_TRUE(AddRmsNorm(args, dres.get(), nullptr).ok());
      ITE_CUDA_OK(cudaDeviceSynchronize());
      std::vector<float> out = Download16(dout, x.size(), dtype);
      std::vector<float> new_res = Download16(dres, x.size(), dtype);
      EXPECT_EQ(testing::CountNonFinite(out), 0u);
      EXPECT_LT(RelError(out, ref), Tolerance(dtype));
      EXPECT_LT(RelError(new_res, res), Tolerance(dtype));  // res now holds residual + x
    }
  }
}

TEST(NormKernel, RejectsBadArguments) {
  RmsNormArgs args;
  args.rows = 1;
  args.dim = 8;
  const Status st = RmsNorm(args, nullptr);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("non-null"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace ite::kernels

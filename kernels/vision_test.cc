// The vision tower's kernels (LayerNorm with bias, add, GELU / quick-GELU, dense attention,
// fp32 conversion) against the CPU reference ops on random inputs over several shapes, poisoned
// outputs, bf16 and f16.
#include "ite/kernels/vision.h"

#include <cmath>

#include "test_util.h"
#include "worker/backend/cpu/cpu_vision_ops.h"

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

TEST(VisionKernel, LayerNormMatchesCpu) {
  ITE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(11);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (auto [rows, dim] : {std::pair{577, 1024}, {577, 64}, {3, 4096}, {5, 37}}) {
      SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " " << rows << "x" << dim);
      std::vector<float> x = RandomVector(size_t(rows) * dim, rng, -3.0f, 5.0f);
      std::vector<float> w = RandomVector(dim, rng, 0.5f, 1.5f);
      std::vector<float> b = RandomVector(dim, rng, -0.5f, 0.5f);
      RoundTo(x, dtype);
      RoundTo(w, dtype);
      RoundTo(b, dtype);
      std::vector<float> ref(x.size());
      cpu::LayerNorm(x.data(), w.data(), b.data(), rows, dim, 1e-5f, ref.data());
      auto dx = Upload16(x, dtype), dw = Upload16(w, dtype), db = Upload16(b, dtype);
      DeviceBuffer dout(x.size() * 2);
      dout.Poison();
      LayerNormArgs a{dtype, dx.get(), dw.get(), db.get(), dout.get(), rows, dim, 1e-5f};
      ASSERT_TRUE(LayerNorm(a, nullptr).ok());
      ITE_CUDA_OK(cudaDeviceSynchronize());
      EXPECT_LT(RelError(Download16(dout, x.size(), dtype), ref), Tolerance(dtype));
      // In place, as the tower runs its pre-layernorm.
      a.out = dx.get();
      ASSERT_TRUE(LayerNorm(a, nullptr).ok());
      ITE_CUDA_OK(cudaDeviceSynchronize());
      EXPECT_LT(RelError(Download16(dx, x.size(), dtype), ref), Tolerance(dtype));
    }
  }
}

TEST(VisionKernel, AddGeluAndConvertMatchCpu) {
  ITE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(12);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (size_t n : {size_t{1}, size_t{1000}, size_t{577} * 4096}) {
      SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " n=" << n);
      std::vector<float> x = RandomVector(n, rng, -4.0f, 4.0f), y = RandomVector(n, rng);
      RoundTo(x, dtype);
      RoundTo(y, dtype);
      std::vector<float> sum(n);
      for (size_t i = 0; i < n; ++i) sum[i] = x[i] + y[i];
      auto dx = Upload16(x, dtype), dy = Upload16(y, dtype);
      ASSERT_TRUE(AddInPlace(dtype, dx.get(), dy.get(), int64_t(n), nullptr).ok());
      ITE_CUDA_OK(cudaDeviceSynchronize());
      EXPECT_LT(RelError(Download16(dx, n, dtype), sum), Tolerance(dtype));
      for (GeluKind kind : {GeluKind::kErf, GeluKind::kQuick}) {
        std::vector<float> ref = x;
        if (kind == GeluKind::kErf) {
          cpu::Gelu(ref.data(), int64_t(n));
        } else {
          cpu::QuickGelu(ref.data(), int64_t(n));
        }
        auto d = Upload16(x, dtype);
        ASSERT_TRUE(Gelu(dtype, kind, d.get(), int64_t(n), nullptr).ok());
        ITE_CUDA_OK(cudaDeviceSynchronize());
        EXPECT_LT(RelError(Download16(d, n, dtype), ref), Tolerance(dtype));
      }
      auto f32 = UploadRaw(x);
      DeviceBuffer out(n * 2);
      out.Poison();
      ASSERT_TRUE(ConvertFromF32(dtype, f32.as<float>(), out.get(), int64_t(n), nullptr).ok());
      ITE_CUDA_OK(cudaDeviceSynchronize());
      EXPECT_EQ(Download16(out, n, dtype), x);  // x is already representable
    }
  }
}

TEST(VisionKernel, DenseAttentionMatchesCpu) {
  ITE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(13);
  ThreadPool pool(2);
  struct Shape {
    int32_t rows, heads, head_dim;
  };
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    // 16/32/64: the tiled kernel (rows in whole and part tiles, one row); 8/80: the per-row one.
    for (const Shape& s : {Shape{577, 16, 64}, Shape{577, 2, 32}, Shape{50, 12, 64}, Shape{1, 1, 8},
                           Shape{257, 3, 80}, Shape{33, 4, 16}, Shape{1, 2, 64}}) {
      SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " rows=" << s.rows
                                        << " heads=" << s.heads << " hd=" << s.head_dim);
      const size_t hidden = size_t(s.heads) * s.head_dim;
      std::vector<float> qkv = RandomVector(size_t(s.rows) * 3 * hidden, rng, -2.0f, 2.0f);
      RoundTo(qkv, dtype);
      std::vector<float> ref(size_t(s.rows) * hidden);
      cpu::DenseAttention(qkv.data(), s.rows, s.heads, s.head_dim, ref.data(), &pool);
      auto dqkv = Upload16(qkv, dtype);
      DeviceBuffer dout(ref.size() * 2);
      dout.Poison();
      DenseAttentionArgs a{dtype,
                           dqkv.get(),
                           dout.get(),
                           s.rows,
                           s.heads,
                           s.head_dim,
                           1.0f / std::sqrt(float(s.head_dim))};
      ASSERT_TRUE(DenseAttention(a, nullptr).ok());
      ITE_CUDA_OK(cudaDeviceSynchronize());
      const std::vector<float> out = Download16(dout, ref.size(), dtype);
      EXPECT_EQ(testing::CountNonFinite(out), 0u);
      EXPECT_LT(RelError(out, ref), Tolerance(dtype));
    }
  }
}

TEST(VisionKernel, BadArgumentsAreErrors) {
  DenseAttentionArgs a;
  EXPECT_FALSE(DenseAttention(a, nullptr).ok());
  a.qkv = a.out = reinterpret_cast<void*>(16);
  a.rows = kDenseAttentionMaxRows + 1;
  a.num_heads = 1;
  a.head_dim = 64;
  EXPECT_FALSE(DenseAttention(a, nullptr).ok());
  LayerNormArgs l;
  EXPECT_FALSE(LayerNorm(l, nullptr).ok());
}

}  // namespace
}  // namespace ite::kernels

// The quantized matrix product of each block format, for every instruction set this CPU runs,
// against the product with the weights dequantized by the loader's own decoder (dequantize.cc,
// written separately from the kernels):
//  - exactly, up to fp32 rounding, when the activations are replaced by their Q8 values: any
//    mistake in unpacking, scales, offsets or lane order shows here;
//  - against the fp32 activations within the bound the activation quantization implies;
// and each instruction set's kernels against the scalar ones on the same inputs, and fused
// matrices whose parts keep different formats (Tensor::segments) against the same references.
#include "worker/backend/cpu/quant_matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "worker/model/dequantize.h"

namespace ite::cpu {
namespace {

constexpr DType kFormats[] = {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1,
                              DType::kQ8_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K};

// Byte offsets of the f16 scale fields in one block (the rest of a block may be any bits).
std::vector<int> HalfFields(DType dtype) {
  switch (dtype) {
    case DType::kQ4_1:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
      return {0, 2};
    case DType::kQ6_K:
      return {208};
    default:
      return {0};
  }
}

// `rows` random rows of `cols` elements: random code bits, scales in [-0.05, 0.05).
std::vector<uint8_t> RandomBlocks(DType dtype, int64_t rows, int64_t cols, std::mt19937* rng) {
  const size_t bytes = DTypeRowBytes(dtype, cols) * static_cast<size_t>(rows);
  std::vector<uint8_t> data(bytes);
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : data) b = static_cast<uint8_t>(byte(*rng));
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
  const size_t block = DTypeBlockBytes(dtype);
  for (size_t b = 0; b < bytes; b += block) {
    for (int off : HalfFields(dtype)) {
      const uint16_t h = FloatToHalf(scale(*rng));
      std::memcpy(&data[b + off], &h, 2);
    }
  }
  return data;
}

// QuantMatMul of `qm` (without and with a thread pool) against the references in double: `w`,
// qm's rows dequantized [qm.rows, qm.cols], times x and times x's Q8 values. Against the Q8
// values the error is fp32 rounding alone; against x, the activation quantization bound of
// quant_matmul.h: sum over Q8 blocks of (max |x| in the block / 254) * sum |w| in the block
// (times 1.001), plus the rounding allowance 1e-5 * (sum |w x| + that bound) + 1e-6.
void ExpectMatchesDequantized(const QuantMatrix& qm, const std::vector<float>& w,
                              const std::vector<float>& x, const std::vector<float>& bias,
                              int32_t m, QuantIsa isa, ThreadPool* pool) {
  const int32_t rows = qm.rows;
  const int64_t cols = qm.cols;
  Q8Rows xq;
  QuantizeQ8Rows(x.data(), m, cols, &xq);
  for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), pool}) {
    SCOPED_TRACE(::testing::Message() << QuantIsaName(isa) << " m=" << m << " rows=" << rows
                                      << " cols=" << cols << (p ? " pool" : ""));
    std::vector<float> out(static_cast<size_t>(m * rows), NAN);
    QuantScratch scratch;
    QuantMatMul(x.data(), qm, bias.data(), m, out.data(), QuantKernelsFor(isa), &scratch, p);
    for (int32_t i = 0; i < m; ++i) {
      for (int32_t r = 0; r < rows; ++r) {
        double exact = 0, on_q8 = 0, abs_sum = 0, quant_bound = 0;
        for (int64_t b = 0; b < cols / kQ8Block; ++b) {
          double amax = 0, w_abs = 0;
          for (int64_t j = b * kQ8Block; j < (b + 1) * kQ8Block; ++j) {
            const double wv = w[r * cols + j], xv = x[i * cols + j];
            const double x8 = static_cast<double>(xq.row_d(i)[b]) * xq.row_q(i)[j];
            exact += wv * xv;
            on_q8 += wv * x8;
            abs_sum += std::fabs(wv * xv);
            amax = std::max(amax, std::fabs(xv));
            w_abs += std::fabs(wv);
          }
          quant_bound += amax / 254.0 * w_abs;
        }
        const double got = out[i * rows + r] - static_cast<double>(bias[r]);
        const double rounding = 1e-5 * (abs_sum + quant_bound) + 1e-6;
        ASSERT_NEAR(got, on_q8, rounding) << "token " << i << " row " << r;
        ASSERT_NEAR(got, exact, quant_bound * 1.001 + rounding) << "token " << i << " row " << r;
      }
    }
  }
}

struct Shape {
  int32_t m, rows, cols_blocks;  // cols = cols_blocks * the format's block
};

// Test names: format_isa.
auto FormatIsaName = [](const auto& info) {
  std::string name =
      std::string(DTypeName(std::get<0>(info.param))) + "_" + QuantIsaName(std::get<1>(info.param));
  for (char& c : name) {
    if (c == '-') c = '_';
  }
  return name;
};

// One case per block format and instruction set; a set this CPU lacks is skipped, so the test
// names show which kernels ran here.
class QuantMatMulTest : public ::testing::TestWithParam<std::tuple<DType, QuantIsa>> {};

TEST_P(QuantMatMulTest, MatchesDequantizedProduct) {
  const auto [dtype, isa] = GetParam();
  if (!QuantIsaSupported(isa))
    GTEST_SKIP() << "this CPU does not run the " << QuantIsaName(isa) << " kernels";
  const GgmlType ggml = DTypeGgml(dtype);
  std::mt19937 rng(1234 + static_cast<int>(dtype));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  // One row, rows that do not fill a thread's 32-row chunk or the kernels' 2-row tiles, several
  // chunks; one token and token counts around the 4-token tiles; rows of an odd and an even
  // number of Q8 blocks (the 512-bit kernels take them in pairs); for the K formats, rows of one
  // super-block and of several (cols 256 to 1536, ffn_down's 1536 among them).
  const Shape shapes[] = {{1, 1, 1},  {1, 7, 3}, {3, 33, 2}, {17, 70, 1},
                          {5, 64, 6}, {6, 5, 5}, {1, 96, 6}, {9, 40, 4}};
  ThreadPool pool(2);
  for (const Shape& s : shapes) {
    const int64_t cols = s.cols_blocks * DTypeBlockSize(dtype);
    const std::vector<uint8_t> blocks = RandomBlocks(dtype, s.rows, cols, &rng);
    std::vector<float> x(static_cast<size_t>(s.m * cols));
    for (float& v : x) v = normal(rng);
    std::vector<float> bias(static_cast<size_t>(s.rows));
    for (float& v : bias) v = normal(rng);

    std::vector<float> w(static_cast<size_t>(s.rows * cols));
    const size_t row_bytes = DTypeRowBytes(dtype, cols);
    for (int32_t r = 0; r < s.rows; ++r)
      DequantizeRow(ggml, blocks.data() + r * row_bytes, w.data() + r * cols, cols);
    Tensor t;
    t.dtype = dtype;
    t.shape = {s.rows, cols};
    t.data = blocks.data();
    ExpectMatchesDequantized(QuantMatrixOf(t), w, x, bias, s.m, isa, &pool);
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantMatMulTest,
                         ::testing::Combine(::testing::ValuesIn(kFormats),
                                            ::testing::ValuesIn(kQuantIsas)),
                         FormatIsaName);

// The kernels of every instruction set against the scalar ones, format by format, on the same
// random blocks and activations. Both sum the same fp32 terms (an exact int32 dot product per 16
// or 32 elements times its scales, plus the offsets) in different orders, so they differ by fp32
// rounding alone: at most 1e-5 of the sum of |w x| over the row (under 1536 terms, each sum
// rounding by 6e-8 relative), plus 1e-6. A wrong lane, scale or nibble moves a result by the
// size of a term, far beyond that.
class QuantIsaVsScalarTest : public ::testing::TestWithParam<std::tuple<DType, QuantIsa>> {};

TEST_P(QuantIsaVsScalarTest, MatchesScalarKernels) {
  const auto [dtype, isa] = GetParam();
  if (!QuantIsaSupported(isa))
    GTEST_SKIP() << "this CPU does not run the " << QuantIsaName(isa) << " kernels";
  const GgmlType ggml = DTypeGgml(dtype);
  std::mt19937 rng(99 + static_cast<int>(dtype));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const Shape shapes[] = {{1, 1, 1}, {1, 64, 6}, {4, 9, 2}, {7, 34, 3}};
  for (const Shape& s : shapes) {
    const int64_t cols = s.cols_blocks * DTypeBlockSize(dtype);
    SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " " << QuantIsaName(isa)
                                      << " m=" << s.m << " rows=" << s.rows << " cols=" << cols);
    const std::vector<uint8_t> blocks = RandomBlocks(dtype, s.rows, cols, &rng);
    std::vector<float> x(static_cast<size_t>(s.m * cols));
    for (float& v : x) v = normal(rng);
    Tensor t;
    t.dtype = dtype;
    t.shape = {s.rows, cols};
    t.data = blocks.data();
    const QuantMatrix qm = QuantMatrixOf(t);
    std::vector<float> got(static_cast<size_t>(s.m * s.rows), NAN);
    std::vector<float> want(got.size(), NAN);
    QuantScratch scratch;
    QuantMatMul(x.data(), qm, nullptr, s.m, got.data(), QuantKernelsFor(isa), &scratch, nullptr);
    QuantMatMul(x.data(), qm, nullptr, s.m, want.data(), QuantKernelsFor(QuantIsa::kScalar),
                &scratch, nullptr);
    // sum |w x| per output, from the dequantized weights.
    std::vector<float> w(static_cast<size_t>(cols));
    const size_t row_bytes = DTypeRowBytes(dtype, cols);
    for (int32_t r = 0; r < s.rows; ++r) {
      DequantizeRow(ggml, blocks.data() + r * row_bytes, w.data(), cols);
      for (int32_t i = 0; i < s.m; ++i) {
        double abs_sum = 0;
        for (int64_t j = 0; j < cols; ++j) abs_sum += std::fabs(w[j] * x[i * cols + j]);
        ASSERT_NEAR(got[i * s.rows + r], want[i * s.rows + r], 1e-5 * abs_sum + 1e-6)
            << "token " << i << " row " << r;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantIsaVsScalarTest,
                         ::testing::Combine(::testing::ValuesIn(kFormats),
                                            ::testing::Values(QuantIsa::kAvx2, QuantIsa::kAvxVnni,
                                                              QuantIsa::kAvx512Vnni)),
                         FormatIsaName);

// A fused matrix whose parts keep their own formats, as the loader leaves Q|K|V or gate|up of a
// llama.cpp Q4_K_M file: each part's rows in a buffer of its own (tensors of one file), reached
// through row pointers, one segment per run of a format. Part sizes are odd (not multiples of
// the kernels' 2-row tiles) and add up to more than a thread's 32-row chunk, so chunks straddle
// segment boundaries. Compared with the product of the fused matrix dequantized part by part.
struct MixedCase {
  std::vector<std::pair<DType, int32_t>> parts;  // (format, rows), in row order
  int64_t cols;
};

class QuantMixedTest : public ::testing::TestWithParam<QuantIsa> {};

TEST_P(QuantMixedTest, MatchesDequantizedFusedProduct) {
  const QuantIsa isa = GetParam();
  if (!QuantIsaSupported(isa))
    GTEST_SKIP() << "this CPU does not run the " << QuantIsaName(isa) << " kernels";
  const MixedCase cases[] = {
      {{{DType::kQ5_0, 37}, {DType::kQ8_0, 13}}, 96},                     // SmolLM2's QKV
      {{{DType::kQ4_K, 21}, {DType::kQ6_K, 15}}, 512},                    // Llama-3.2's QKV
      {{{DType::kQ4_K, 9}, {DType::kQ6_K, 3}, {DType::kQ4_K, 27}}, 256},  // K alone differs
      {{{DType::kQ8_0, 1}, {DType::kQ4_0, 33}, {DType::kQ5_1, 7}}, 64},
  };
  std::mt19937 rng(2024);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  ThreadPool pool(2);
  for (const MixedCase& c : cases) {
    std::vector<std::vector<uint8_t>> buffers;
    auto row_ptrs = std::make_shared<std::vector<const uint8_t*>>();
    auto segments = std::make_shared<std::vector<RowSegment>>();
    std::vector<float> w;  // the fused matrix dequantized, [rows, cols]
    std::string formats;
    for (const auto& [dtype, rows] : c.parts) {
      buffers.push_back(RandomBlocks(dtype, rows, c.cols, &rng));
      const size_t row_bytes = DTypeRowBytes(dtype, c.cols);
      for (int32_t r = 0; r < rows; ++r) {
        const uint8_t* row = buffers.back().data() + r * row_bytes;
        row_ptrs->push_back(row);
        w.resize(w.size() + static_cast<size_t>(c.cols));
        DequantizeRow(DTypeGgml(dtype), row, w.data() + w.size() - c.cols, c.cols);
      }
      segments->push_back({dtype, rows});
      formats += std::string(formats.empty() ? "" : "+") + DTypeName(dtype);
    }
    Tensor t;
    t.dtype = c.parts[0].first;
    t.shape = {static_cast<int64_t>(row_ptrs->size()), c.cols};
    t.data = (*row_ptrs)[0];
    t.row_ptrs = row_ptrs;
    t.segments = segments;
    const QuantMatrix qm = QuantMatrixOf(t);
    ASSERT_EQ(qm.segments.size(), c.parts.size());
    for (int32_t m : {1, 5}) {
      SCOPED_TRACE(formats);
      std::vector<float> x(static_cast<size_t>(m * c.cols));
      for (float& v : x) v = normal(rng);
      std::vector<float> bias(static_cast<size_t>(qm.rows));
      for (float& v : bias) v = normal(rng);
      ExpectMatchesDequantized(qm, w, x, bias, m, isa, &pool);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, QuantMixedTest, ::testing::ValuesIn(kQuantIsas),
                         [](const auto& info) {
                           std::string name = QuantIsaName(info.param);
                           for (char& ch : name) {
                             if (ch == '-') ch = '_';
                           }
                           return name;
                         });

// A mixed tensor's resident bytes are its segments', each at its own format's row size.
TEST(QuantMixed, TensorBytesCountEachSegment) {
  Tensor t;
  t.dtype = DType::kQ5_0;
  t.shape = {5, 64};
  t.segments = std::make_shared<std::vector<RowSegment>>(
      std::vector<RowSegment>{{DType::kQ5_0, 3}, {DType::kQ8_0, 2}});
  EXPECT_EQ(t.nbytes(), 3 * DTypeRowBytes(DType::kQ5_0, 64) + 2 * DTypeRowBytes(DType::kQ8_0, 64));
}

// Rows taken through row pointers (a fused or permuted matrix) give the rows they point to.
TEST(QuantMatMul, RowPointers) {
  std::mt19937 rng(7);
  const int64_t cols = 64;
  const std::vector<uint8_t> blocks = RandomBlocks(DType::kQ4_1, 4, cols, &rng);
  const size_t row_bytes = DTypeRowBytes(DType::kQ4_1, cols);
  Tensor dense;
  dense.dtype = DType::kQ4_1;
  dense.shape = {4, cols};
  dense.data = blocks.data();
  Tensor permuted = dense;
  permuted.row_ptrs = std::make_shared<std::vector<const uint8_t*>>(
      std::vector<const uint8_t*>{blocks.data() + 2 * row_bytes, blocks.data(),
                                  blocks.data() + 3 * row_bytes, blocks.data() + row_bytes});
  std::vector<float> x(cols);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  std::vector<float> a(4), b(4);
  QuantScratch scratch;
  const QuantKernels& k = QuantKernelsFor(BestQuantIsa());
  QuantMatMul(x.data(), QuantMatrixOf(dense), nullptr, 1, a.data(), k, &scratch, nullptr);
  QuantMatMul(x.data(), QuantMatrixOf(permuted), nullptr, 1, b.data(), k, &scratch, nullptr);
  EXPECT_EQ(b[0], a[2]);
  EXPECT_EQ(b[1], a[0]);
  EXPECT_EQ(b[2], a[3]);
  EXPECT_EQ(b[3], a[1]);
  EXPECT_NE(a[0], a[1]);
}

TEST(QuantIsa, BestIsSupported) {
  EXPECT_TRUE(QuantIsaSupported(BestQuantIsa()));
  EXPECT_TRUE(QuantIsaSupported(QuantIsa::kScalar));
}

// Restores the default limit however a test ends.
struct IsaLimitGuard {
  ~IsaLimitGuard() { SetQuantIsaLimit(kQuantIsas[std::size(kQuantIsas) - 1]); }
};

// Without a limit the dispatcher picks the widest set this CPU runs; every set reads it.
TEST(QuantIsa, BestIsTheWidestSupported) {
  QuantIsa widest = QuantIsa::kScalar;
  for (QuantIsa isa : kQuantIsas) {
    if (QuantIsaSupported(isa)) widest = isa;
  }
  EXPECT_EQ(BestQuantIsa(), widest);
  if (!QuantIsaSupported(QuantIsa::kAvx512Vnni))
    GTEST_SKIP() << "this CPU lacks AVX-512 (F, BW, VL, DQ) or AVX512-VNNI";
  EXPECT_EQ(BestQuantIsa(), QuantIsa::kAvx512Vnni);
}

// A limit at each set gives that set where this CPU runs it, else a narrower one it runs.
TEST(QuantIsa, LimitForcesEachLevel) {
  IsaLimitGuard guard;
  for (QuantIsa isa : kQuantIsas) {
    SetQuantIsaLimit(isa);
    const QuantIsa got = BestQuantIsa();
    EXPECT_TRUE(QuantIsaSupported(got)) << QuantIsaName(isa);
    if (QuantIsaSupported(isa)) {
      EXPECT_EQ(got, isa);
    } else {
      EXPECT_LT(got, isa);
    }
  }
}

TEST(QuantIsa, NamesRoundTrip) {
  for (QuantIsa isa : kQuantIsas) {
    QuantIsa back = QuantIsa::kScalar;
    ASSERT_TRUE(QuantIsaFromName(QuantIsaName(isa), &back)) << QuantIsaName(isa);
    EXPECT_EQ(back, isa);
  }
  QuantIsa unused;
  EXPECT_FALSE(QuantIsaFromName("avx1024", &unused));
}

}  // namespace
}  // namespace ite::cpu

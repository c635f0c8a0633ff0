#include "worker/model/dequantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#ifdef __F16C__
#include <immintrin.h>
#endif

#include <gtest/gtest.h>

namespace ite {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string GoldenDir() {
  const char* src = std::getenv("ITE_SOURCE_DIR");
  return std::string(src != nullptr ? src : ".") + "/tests/data/quant/";
}

// Goldens from scripts/make_quant_goldens.py: gguf-py's quantize/dequantize on fixed data.
class DequantizeGoldenTest : public ::testing::TestWithParam<GgmlType> {};

TEST_P(DequantizeGoldenTest, MatchesGgufPy) {
  const GgmlType type = GetParam();
  const std::string q = ReadFile(GoldenDir() + GgmlTypeName(type) + ".q");
  const std::string f = ReadFile(GoldenDir() + GgmlTypeName(type) + ".f32");
  constexpr int64_t kRows = 2, kCols = 512;
  ASSERT_EQ(q.size(), GgmlRowBytes(type, kCols) * kRows) << "golden missing or wrong size";
  ASSERT_EQ(f.size(), sizeof(float) * kRows * kCols);
  std::vector<float> want(kRows * kCols), got(kRows * kCols);
  std::memcpy(want.data(), f.data(), f.size());
  for (int64_t r = 0; r < kRows; ++r) {
    DequantizeRow(type, reinterpret_cast<const uint8_t*>(q.data()) + r * GgmlRowBytes(type, kCols),
                  got.data() + r * kCols, kCols);
  }
  int64_t nonzero = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    // numpy may group the scale products differently; allow a couple of float32 ulps.
    ASSERT_NEAR(got[i], want[i], 2e-7f * std::max(1.0f, std::fabs(want[i])))
        << GgmlTypeName(type) << " element " << i;
    nonzero += want[i] != 0.0f;
  }
  EXPECT_GT(nonzero, kRows * kCols / 2);  // the golden is not trivially zero
}

INSTANTIATE_TEST_SUITE_P(AllTypes, DequantizeGoldenTest,
                         ::testing::Values(GgmlType::F32, GgmlType::F16, GgmlType::BF16,
                                           GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1,
                                           GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q4_K,
                                           GgmlType::Q5_K, GgmlType::Q6_K),
                         [](const auto& info) { return std::string(GgmlTypeName(info.param)); });

// Our Q8_0 encoder on the golden's float data gives the bytes gguf-py's quantizer wrote (an
// all-zero block included), and its error is at most half a step per element.
TEST(QuantizeQ8_0Test, MatchesGgufPyBytes) {
  const std::string x = ReadFile(GoldenDir() + "F32.q");
  const std::string want = ReadFile(GoldenDir() + "Q8_0.q");
  constexpr int64_t kCols = 512;
  ASSERT_EQ(x.size(), 2 * kCols * sizeof(float));
  ASSERT_EQ(want.size(), 2 * GgmlRowBytes(GgmlType::Q8_0, kCols));
  std::vector<float> xf(2 * kCols);
  std::memcpy(xf.data(), x.data(), x.size());
  std::string got(want.size(), '\0');
  for (int r = 0; r < 2; ++r) {
    QuantizeRowQ8_0(xf.data() + r * kCols,
                    reinterpret_cast<uint8_t*>(got.data()) + r * GgmlRowBytes(GgmlType::Q8_0, kCols),
                    kCols);
  }
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_EQ(static_cast<uint8_t>(got[i]), static_cast<uint8_t>(want[i])) << "byte " << i;

  std::vector<float> back(2 * kCols);
  for (int r = 0; r < 2; ++r) {
    DequantizeRow(GgmlType::Q8_0,
                  reinterpret_cast<const uint8_t*>(got.data()) + r * GgmlRowBytes(GgmlType::Q8_0, kCols),
                  back.data() + r * kCols, kCols);
  }
  for (int64_t b = 0; b < 2 * kCols / 32; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xf[b * 32 + i]));
    // Half a step of d = amax / 127, plus d's own rounding to f16 (2^-11 relative) on |q| <= 127.
    const float bound = amax / 127.0f * 0.5f + amax * 0x1p-11f + 1e-7f;
    for (int i = 0; i < 32; ++i)
      ASSERT_NEAR(back[b * 32 + i], xf[b * 32 + i], bound) << "block " << b << " element " << i;
  }
}

TEST(HalfTest, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(f)))) << h;
      continue;
    }
    EXPECT_EQ(FloatToHalf(f), h) << h;
  }
  EXPECT_EQ(HalfToFloat(0x3C00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xC000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(HalfToFloat(0x7BFF), 65504.0f);
  EXPECT_EQ(FloatToHalf(1e6f), 0x7C00);  // overflow -> inf
  EXPECT_EQ(FloatToHalf(65519.0f), 0x7BFF);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7C00);  // the tie rounds to even, which is inf
}

#ifdef __F16C__
TEST(HalfTest, MatchesHardwareConversion) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    uint32_t b = bits(rng);
    float f;
    std::memcpy(&f, &b, 4);
    if (std::isnan(f)) continue;
    const uint16_t hw = static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
    ASSERT_EQ(FloatToHalf(f), hw) << "float bits 0x" << std::hex << b;
    ASSERT_EQ(HalfToFloat(hw), _cvtsh_ss(hw));
  }
}
#endif

TEST(Bf16Test, RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3F80);
  EXPECT_EQ(Bf16ToFloat(0x3F80), 1.0f);
  auto from_bits = [](uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
  };
  EXPECT_EQ(FloatToBf16(from_bits(0x3F808000)), 0x3F80);  // tie, even stays
  EXPECT_EQ(FloatToBf16(from_bits(0x3F818000)), 0x3F82);  // tie, odd rounds up
  EXPECT_EQ(FloatToBf16(from_bits(0x3F808001)), 0x3F81);  // above the tie
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::nanf("")))));
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = Bf16ToFloat(static_cast<uint16_t>(b));
    if (std::isnan(f)) continue;
    EXPECT_EQ(FloatToBf16(f), b);
  }
}

}  // namespace
}  // namespace ite

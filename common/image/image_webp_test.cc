// WebP decoding (built where libwebp is): images encoded here by libwebp's own encoder come back
// with their pixels (exactly for lossless, alpha dropped; close for lossy), sniffed or declared;
// truncated, corrupt, mislabelled and oversized ones are InvalidArgument saying why. The committed
// photograph re-encoded losslessly preprocesses exactly as its PNG does.
#include <gtest/gtest.h>
#include <webp/encode.h>

#include <cstdlib>
#include <fstream>

#include "common/image/image_decoder.h"
#include "common/image/image_processor.h"

namespace ite {
namespace {

// A w x h gradient with a little of everything, interleaved RGB.
std::vector<uint8_t> Pattern(int w, int h) {
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &rgb[(static_cast<size_t>(y) * w + x) * 3];
      p[0] = static_cast<uint8_t>(x * 255 / (w - 1));
      p[1] = static_cast<uint8_t>(y * 255 / (h - 1));
      p[2] = static_cast<uint8_t>((x * 7 + y * 13) % 256);
    }
  }
  return rgb;
}

std::string Take(uint8_t* out, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(out), size);
  WebPFree(out);
  return bytes;
}

std::string Lossless(const std::vector<uint8_t>& rgb, int w, int h) {
  uint8_t* out = nullptr;
  const size_t n = WebPEncodeLosslessRGB(rgb.data(), w, h, w * 3, &out);
  EXPECT_GT(n, 0u);
  return Take(out, n);
}

std::string Lossy(const std::vector<uint8_t>& rgb, int w, int h) {
  uint8_t* out = nullptr;
  const size_t n = WebPEncodeRGB(rgb.data(), w, h, w * 3, 90.0f, &out);
  EXPECT_GT(n, 0u);
  return Take(out, n);
}

TEST(ImageWebpTest, IsASupportedType) {
  EXPECT_TRUE(IsSupportedImageType("image/webp"));
  EXPECT_NE(std::string(SupportedImageTypes()).find("image/webp"), std::string::npos);
}

TEST(ImageWebpTest, LosslessComesBackExactly) {
  const int w = 37, h = 23;
  const std::vector<uint8_t> rgb = Pattern(w, h);
  const std::string webp = Lossless(rgb, w, h);
  EXPECT_EQ(SniffImageType(webp), "image/webp");
  for (const char* mime : {"", "image/webp"}) {
    StatusOr<RgbImage> im = DecodeImage(webp, mime, {});
    ASSERT_TRUE(im.ok()) << im.status().ToString();
    EXPECT_EQ(im->width, w);
    EXPECT_EQ(im->height, h);
    EXPECT_EQ(im->rgb, rgb);
  }
}

TEST(ImageWebpTest, AlphaIsDroppedAndColoursKept) {
  const int w = 16, h = 9;
  const std::vector<uint8_t> rgb = Pattern(w, h);
  std::vector<uint8_t> rgba;
  for (size_t i = 0; i < rgb.size(); i += 3) {
    rgba.insert(rgba.end(), {rgb[i], rgb[i + 1], rgb[i + 2]});
    rgba.push_back(static_cast<uint8_t>(1 + i % 254));  // never 0: those colours may be dropped
  }
  uint8_t* out = nullptr;
  const size_t n = WebPEncodeLosslessRGBA(rgba.data(), w, h, w * 4, &out);
  ASSERT_GT(n, 0u);
  StatusOr<RgbImage> im = DecodeImage(Take(out, n), "", {});
  ASSERT_TRUE(im.ok()) << im.status().ToString();
  EXPECT_EQ(im->rgb, rgb);
}

TEST(ImageWebpTest, LossyIsClose) {
  const int w = 64, h = 48;
  const std::vector<uint8_t> rgb = Pattern(w, h);
  StatusOr<RgbImage> im = DecodeImage(Lossy(rgb, w, h), "image/webp", {});
  ASSERT_TRUE(im.ok()) << im.status().ToString();
  ASSERT_EQ(im->rgb.size(), rgb.size());
  double err = 0;
  for (size_t i = 0; i < rgb.size(); ++i) err += std::abs(int{im->rgb[i]} - int{rgb[i]});
  EXPECT_LT(err / rgb.size(), 12.0) << "mean absolute error per channel";
}

TEST(ImageWebpTest, BadWebpIsInvalidArgumentSayingWhy) {
  const int w = 40, h = 30;
  const std::vector<uint8_t> rgb = Pattern(w, h);
  const std::string lossless = Lossless(rgb, w, h), lossy = Lossy(rgb, w, h);
  // A lossless chunk header over bytes that are no VP8L bitstream.
  std::string junk("RIFF\x2c\0\0\0WEBPVP8L\x20\0\0\0", 20);
  for (int i = 0; i < 32; ++i) junk.push_back(static_cast<char>(0x9b ^ (i * 37)));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {lossless.substr(0, lossless.size() / 2), "image/webp image is truncated"},
      {lossy.substr(0, lossy.size() / 2), "image/webp image is truncated"},
      {lossy.substr(0, 20), "image/webp image header is"},
      {std::string("RIFF\x10\0\0\0WEBPVP8 ", 16), "image/webp image header is"},
      {junk, "image/webp image header is corrupt"},
  };
  for (const auto& [bytes, says] : cases) {
    StatusOr<RgbImage> im = DecodeImage(bytes, "", {});
    ASSERT_FALSE(im.ok()) << says;
    EXPECT_EQ(im.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(im.status().message().find(says), std::string::npos) << im.status().message();
  }
  StatusOr<RgbImage> mislabelled = DecodeImage(lossless, "image/png", {});
  ASSERT_FALSE(mislabelled.ok());
  EXPECT_NE(mislabelled.status().message().find("declared as image/png holds image/webp"),
            std::string::npos);
  ImageLimits small;
  small.max_pixels = w * h - 1;
  StatusOr<RgbImage> big = DecodeImage(lossless, "", small);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("40x30 pixels, more than the limit"), std::string::npos)
      << big.status().message();
}

TEST(ImageWebpTest, PreprocessesAsThePngOfTheSamePixels) {
  const char* d = std::getenv("ITE_SOURCE_DIR");
  const std::string data = std::string(d ? d : ".") + "/tests/data";
  std::ifstream in(data + "/images/astronaut.png", std::ios::binary);
  ASSERT_TRUE(in.good());
  const std::string png{std::istreambuf_iterator<char>(in), {}};
  StatusOr<RgbImage> from_png = DecodeImage(png, "image/png", {});
  ASSERT_TRUE(from_png.ok());
  StatusOr<RgbImage> from_webp =
      DecodeImage(Lossless(from_png->rgb, from_png->width, from_png->height), "image/webp", {});
  ASSERT_TRUE(from_webp.ok()) << from_webp.status().ToString();
  StatusOr<ImageProcessorConfig> config = LoadImageProcessorConfig(data + "/tiny-llava");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  StatusOr<std::vector<float>> a = PreprocessImage(*from_png, *config);
  StatusOr<std::vector<float>> b = PreprocessImage(*from_webp, *config);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
}

}  // namespace
}  // namespace ite

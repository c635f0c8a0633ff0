// The image processor against transformers' LlavaImageProcessor (torchvision backend) on
// scikit-image's sample photographs at several sizes and aspect ratios, with padding on and off
// (tests/data/golden/preprocess.json, made by tests/golden/make_llava.py): sums over all pixel
// values and every 509th value. PNG inputs decode to the same pixels PIL gives, so the values
// must agree to float rounding; JPEG decoders (stb here, libjpeg-turbo in PIL) may differ by a
// few levels in a pixel, which the looser JPEG bound allows and the test reports.
#include "common/image/image_processor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/image/image_decoder.h"

namespace ite {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path SourceDir() {
  const char* d = std::getenv("ITE_SOURCE_DIR");
  return d != nullptr ? fs::path(d) : fs::path(".");
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(ImageProcessorTest, MatchesTransformersOnSamplePhotographs) {
  std::ifstream in(SourceDir() / "tests/data/golden/preprocess.json");
  ASSERT_TRUE(in.good());
  const json golden = json::parse(in);
  ASSERT_GE(golden["cases"].size(), 15u);
  for (const json& c : golden["cases"]) {
    SCOPED_TRACE(c["image"].get<std::string>() + " " + c["setting"].get<std::string>());
    auto config = ImageProcessorConfigFromJson(c["processor"], "preprocess.json");
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    auto image = DecodeImage(ReadFile(SourceDir() / c["image"].get<std::string>()), "", {});
    ASSERT_TRUE(image.ok()) << image.status().ToString();
    auto pixels = PreprocessImage(*image, *config);
    ASSERT_TRUE(pixels.ok()) << pixels.status().ToString();
    const std::vector<float>& px = *pixels;
    const auto shape = c["shape"].get<std::vector<int64_t>>();
    ASSERT_EQ(shape.size(), 3u);
    ASSERT_EQ(config->out_height(), shape[1]);
    ASSERT_EQ(config->out_width(), shape[2]);
    ASSERT_EQ(px.size(), static_cast<size_t>(shape[0] * shape[1] * shape[2]));
    const bool jpeg = c["image"].get<std::string>().find(".jpg") != std::string::npos;
    const size_t stride = c["sample_stride"].get<size_t>();
    const auto& samples = c["samples"];
    ASSERT_EQ(samples.size(), (px.size() + stride - 1) / stride);
    double max_diff = 0;
    size_t differing = 0;
    for (size_t i = 0; i < samples.size(); ++i) {
      const double d = std::fabs(px[i * stride] - samples[i].get<double>());
      max_diff = std::max(max_diff, d);
      differing += d > 1e-5;
    }
    double sum = 0, sum_abs = 0;
    for (float v : px) {
      sum += v;
      sum_abs += std::fabs(v);
    }
    const double n = static_cast<double>(px.size());
    if (jpeg) {
      // stb and libjpeg-turbo differ by up to 3 levels of 255 in a pixel here (measured), 0.045
      // after normalisation; 4 levels is 0.06.
      EXPECT_LT(max_diff, 0.06);
      EXPECT_NEAR(sum / n, c["sum"].get<double>() / n, 0.01);
      std::printf("%s %s: JPEG decode differs from PIL's in %zu of %zu samples, max %.4f\n",
                  c["image"].get<std::string>().c_str(), c["setting"].get<std::string>().c_str(),
                  differing, samples.size(), max_diff);
    } else {
      EXPECT_LE(max_diff, 1e-5) << differing << " of " << samples.size() << " samples differ";
      EXPECT_NEAR(sum, c["sum"].get<double>(), 1e-6 * c["sum_abs"].get<double>() + 1e-3);
      EXPECT_NEAR(sum_abs, c["sum_abs"].get<double>(), 1e-6 * c["sum_abs"].get<double>());
    }
  }
}

TEST(ImageProcessorTest, PadsToSquareWithTheMeanColour) {
  // A 4x2 white image padded to 4x4: rows 0 and 3 take the mean colour, int(mean * 255).
  RgbImage im{4, 2, std::vector<uint8_t>(4 * 2 * 3, 255)};
  ImageProcessorConfig c;
  c.do_pad = true;
  c.do_resize = false;
  c.do_center_crop = true;
  c.crop_height = c.crop_width = 4;
  c.do_normalize = false;
  c.do_rescale = false;
  auto pixels = PreprocessImage(im, c);
  ASSERT_TRUE(pixels.ok());
  const std::vector<float>& px = *pixels;
  ASSERT_EQ(px.size(), 48u);
  EXPECT_EQ(px[0], 122.0f);        // red, row 0
  EXPECT_EQ(px[16 + 0], 116.0f);   // green
  EXPECT_EQ(px[32 + 15], 104.0f);  // blue, row 3
  EXPECT_EQ(px[4], 255.0f);        // row 1 is the image
}

TEST(ImageProcessorTest, ExtremeAspectRatioIsRefused) {
  // 2000x1 resized to a shorter side of 336 would be 672000x336 pixels.
  RgbImage im{2000, 1, std::vector<uint8_t>(2000 * 3, 9)};
  ImageProcessorConfig c;
  c.shortest_edge = 336;
  c.crop_height = c.crop_width = 336;
  auto px = PreprocessImage(im, c);
  ASSERT_FALSE(px.ok());
  EXPECT_NE(px.status().ToString().find("aspect ratio"), std::string::npos);
  // 10000x1 padded to a square would be 10^8 pixels.
  RgbImage wide{10000, 1, std::vector<uint8_t>(10000 * 3, 9)};
  c.do_pad = true;
  px = PreprocessImage(wide, c);
  ASSERT_FALSE(px.ok());
  EXPECT_NE(px.status().ToString().find("pad to a square"), std::string::npos);
  RgbImage broken{4, 4, std::vector<uint8_t>(5)};
  EXPECT_FALSE(PreprocessImage(broken, c).ok());
}

TEST(ImageProcessorTest, ConfigErrorsNameTheKey) {
  json j = {{"size", {{"shortest_edge", 336}}}, {"crop_size", {{"height", 336}, {"width", 336}}}};
  EXPECT_TRUE(ImageProcessorConfigFromJson(j, "p.json").ok());
  json bad = j;
  bad["resample"] = 2;
  EXPECT_NE(ImageProcessorConfigFromJson(bad, "p.json").status().ToString().find("resample"),
            std::string::npos);
  bad = j;
  bad["crop_size"]["height"] = -1;
  EXPECT_NE(ImageProcessorConfigFromJson(bad, "p.json").status().ToString().find("height"),
            std::string::npos);
  bad = j;
  bad.erase("size");
  EXPECT_NE(ImageProcessorConfigFromJson(bad, "p.json").status().ToString().find("size"),
            std::string::npos);
  bad = j;
  bad["image_std"] = {0.5, 0.0, 0.5};
  EXPECT_FALSE(ImageProcessorConfigFromJson(bad, "p.json").ok());
  EXPECT_FALSE(LoadImageProcessorConfig("/nonexistent").ok());
  auto tiny = LoadImageProcessorConfig((SourceDir() / "tests/data/tiny-llava").string());
  ASSERT_TRUE(tiny.ok()) << tiny.status().ToString();
  EXPECT_TRUE(tiny->do_pad);
  EXPECT_EQ(tiny->out_height(), 336);
}

}  // namespace
}  // namespace ite

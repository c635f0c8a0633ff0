// Decoding the sample images, and every kind of bad input failing with a clear
// InvalidArgument: empty, unknown format, wrong declared type, truncated, corrupt, too many
// bytes, too many pixels (refused from the header, before decoding).
#include "common/image/image_decoder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace ite {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string Sample(const std::string& name) {
  const char* d = std::getenv("ITE_SOURCE_DIR");
  std::ifstream in(fs::path(d != nullptr ? d : ".") / "tests/data/images" / name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string Error(const std::string& bytes, const std::string& mime = "",
                  const ImageLimits& limits = {}) {
  auto im = DecodeImage(bytes, mime, limits);
  if (im.ok()) return "decoded";
  EXPECT_EQ(im.status().code(), StatusCode::kInvalidArgument);
  return im.status().ToString();
}

TEST(ImageDecoderTest, DecodesPngJpegAndGrey) {
  auto png = DecodeImage(Sample("coffee.png"), "image/png", {});
  ASSERT_TRUE(png.ok()) << png.status().ToString();
  EXPECT_EQ(png->width, 150);
  EXPECT_EQ(png->height, 100);
  EXPECT_EQ(png->rgb.size(), 150u * 100 * 3);
  auto jpg = DecodeImage(Sample("chelsea.jpg"), "image/jpg", {});
  ASSERT_TRUE(jpg.ok()) << jpg.status().ToString();
  EXPECT_EQ(jpg->width, 90);
  EXPECT_EQ(jpg->height, 140);
  auto grey = DecodeImage(Sample("camera_gray.png"), "", {});
  ASSERT_TRUE(grey.ok());
  for (size_t i = 0; i < grey->rgb.size(); i += 3) {
    ASSERT_EQ(grey->rgb[i], grey->rgb[i + 1]);
    ASSERT_EQ(grey->rgb[i], grey->rgb[i + 2]);
  }
  EXPECT_EQ(SniffImageType(Sample("coffee.png")), "image/png");
  EXPECT_EQ(SniffImageType("GIF89a...."), "image/gif");
}

TEST(ImageDecoderTest, BadInputIsInvalidArgument) {
  EXPECT_THAT(Error(""), HasSubstr("empty"));
  EXPECT_THAT(Error("hello, this is text"), HasSubstr("unrecognised signature"));
  EXPECT_THAT(Error(Sample("coffee.png"), "image/jpeg"), HasSubstr("declared as image/jpeg"));
  const std::string png = Sample("coffee.png");
  const std::string jpg = Sample("chelsea.jpg");
  EXPECT_THAT(Error(png.substr(0, png.size() / 2)), HasSubstr("png image"));
  EXPECT_THAT(Error(jpg.substr(0, jpg.size() / 2)), HasSubstr("truncated"));
  EXPECT_THAT(Error(png.substr(0, 20)), HasSubstr("png image"));
  std::string corrupt = png;
  for (size_t i = 40; i < corrupt.size(); i += 7) corrupt[i] = static_cast<char>(corrupt[i] ^ 0x5a);
  EXPECT_THAT(Error(corrupt), HasSubstr("png image"));
  ImageLimits small;
  small.max_bytes = 1000;
  EXPECT_THAT(Error(png, "", small), HasSubstr("more than the limit of 1000"));
  ImageLimits few;
  few.max_pixels = 100 * 100;
  EXPECT_THAT(Error(png, "", few), HasSubstr("150x100 pixels"));
}

// stb_image 2.27 writes past its 257-entry size table for such a table; it must never see one.
TEST(ImageDecoderTest, HuffmanTableOfMoreThan256CodesIsRefusedBeforeDecoding) {
  std::string jpg = Sample("chelsea.jpg");
  const size_t dht = jpg.find("\xff\xc4");
  ASSERT_NE(dht, std::string::npos);
  for (size_t k = 0; k < 16; ++k) jpg[dht + 5 + k] = static_cast<char>(0xff);  // 4080 codes
  EXPECT_THAT(Error(jpg), HasSubstr("Huffman table of 4080 codes"));
  // The input image_fuzz found (kept as a seed of tests/data/fuzz/image).
  const char* d = std::getenv("ITE_SOURCE_DIR");
  std::ifstream in(
      fs::path(d != nullptr ? d : ".") / "tests/data/fuzz/image/regress_dht_over_256_codes.jpg",
      std::ios::binary);
  ASSERT_TRUE(in.good());
  EXPECT_THAT(Error(std::string(std::istreambuf_iterator<char>(in), {})), HasSubstr("Huffman"));
  // The sample JPEGs (baseline and progressive, whose tables come between scans) still decode.
  for (const char* name : {"chelsea.jpg", "coffee_full.jpg", "../fuzz/image/baseline.jpg",
                           "../fuzz/image/progressive.jpg", "../fuzz/image/grey.jpg"}) {
    auto im = DecodeImage(Sample(name), "", {});
    EXPECT_TRUE(im.ok()) << name << ": " << im.status().ToString();
  }
}

// stb_image 2.27 decodes such a scan with its uninitialised table (garbage indices).
TEST(ImageDecoderTest, ScanUsingAnUndefinedHuffmanTableIsRefusedBeforeDecoding) {
  std::string jpg = Sample("chelsea.jpg");
  const size_t sos = jpg.find("\xff\xda");
  ASSERT_NE(sos, std::string::npos);
  // The first component's tables: DC 0 (defined), AC 3 (not).
  jpg[sos + 6] = static_cast<char>(0x03);
  EXPECT_THAT(Error(jpg), HasSubstr("uses AC Huffman table 3, not defined"));
  jpg[sos + 6] = static_cast<char>(0x20);
  EXPECT_THAT(Error(jpg), HasSubstr("uses DC Huffman table 2, not defined"));
  // The input image_fuzz found: a progressive AC scan before any AC table (kept as a seed).
  const char* d = std::getenv("ITE_SOURCE_DIR");
  std::ifstream in(fs::path(d != nullptr ? d : ".") /
                       "tests/data/fuzz/image/regress_prog_ac_undefined_table.jpg",
                   std::ios::binary);
  ASSERT_TRUE(in.good());
  EXPECT_THAT(Error(std::string(std::istreambuf_iterator<char>(in), {})),
              HasSubstr("uses AC Huffman table 0, not defined"));
}

// stb_image 2.27 grows its IDAT buffer to a chunk's declared length before reading it: a file of
// 87 bytes whose second IDAT claims 2 GiB made it allocate 2 GiB. It is refused before stb sees it.
TEST(ImageDecoderTest, PngChunkLongerThanTheFileIsRefusedBeforeDecoding) {
  const char* d = std::getenv("ITE_SOURCE_DIR");
  std::ifstream in(fs::path(d != nullptr ? d : ".") /
                       "tests/data/fuzz/image/regress_png_idat_claims_2gib.png",
                   std::ios::binary);
  ASSERT_TRUE(in.good());
  EXPECT_THAT(Error(std::string(std::istreambuf_iterator<char>(in), {})),
              HasSubstr("its chunk at byte 55 declares 2147418112 bytes, the file has 24"));
  // A whole file cut before its IEND chunk, and one cut inside a chunk.
  const std::string png = Sample("coffee.png");
  EXPECT_THAT(Error(png.substr(0, png.size() - 12)), HasSubstr("no IEND chunk"));
  EXPECT_THAT(Error(png.substr(0, png.size() - 20)), HasSubstr("declares"));
  // Bytes after IEND are ignored, as other decoders do.
  auto padded = DecodeImage(png + std::string(10, '\0'), "", {});
  EXPECT_TRUE(padded.ok()) << padded.status().ToString();
  for (const char* name : {"../fuzz/image/palette.png", "camera_gray.png"}) {
    auto im = DecodeImage(Sample(name), "", {});
    EXPECT_TRUE(im.ok()) << name << ": " << im.status().ToString();
  }
}

TEST(ImageDecoderTest, HugeDimensionsAreRefusedFromTheHeader) {
  // A PNG header claiming 8000 x 8000 pixels (over the 40 Mi default) and no data after it.
  std::string png = Sample("coffee.png").substr(0, 33);
  auto put32 = [&](size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) png[at + i] = static_cast<char>(v >> (24 - 8 * i));
  };
  put32(16, 8000);
  put32(20, 8000);
  EXPECT_THAT(Error(png), HasSubstr("8000x8000 pixels, more than the limit"));
  // Past what stb takes at all (2^30 bytes of pixels): refused as well.
  put32(16, 60000);
  put32(20, 60000);
  EXPECT_THAT(Error(png), HasSubstr("png image"));
}

}  // namespace
}  // namespace ite

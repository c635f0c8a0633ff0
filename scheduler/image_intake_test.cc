// ImageIntake on the tiny LLaVA folder: images decoded and preprocessed to the tower's size,
// image tokens expanded to 576 keyed positions (the same image gives the same keys, another
// image other keys), placeholder counts checked, bad images named.
#include "scheduler/image_intake.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

namespace ite {
namespace {

using ::testing::HasSubstr;

std::string Dir() {
  const char* d = std::getenv("ITE_SOURCE_DIR");
  return std::string(d ? d : ".") + "/tests/data";
}

std::string Read(const std::string& name) {
  std::ifstream in(Dir() + "/images/" + name, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

ModelInfo TinyLlava() {
  ModelInfo info;
  info.vocab_size = 402;
  info.image_token_id = 401;
  info.image_tokens = 576;
  info.image_size = 336;
  return info;
}

TEST(ImageIntakeTest, ExpandsImageTokensWithContentKeys) {
  auto intake = ImageIntake::Create(Dir() + "/tiny-llava", TinyLlava(), {});
  ASSERT_TRUE(intake.ok()) << intake.status().ToString();
  auto a = intake->Prepare(Read("coffee.png"), "image/png", "images[0]");
  auto b = intake->Prepare(Read("astronaut.png"), "", "images[1]");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->pixels->size(), 3u * 336 * 336);
  std::vector<int32_t> tokens = {1, 401, 7, 401, 9};
  auto placed = intake->Expand(&tokens, {*a, *b});
  ASSERT_TRUE(placed.ok()) << placed.status().ToString();
  ASSERT_EQ(placed->size(), 2u);
  EXPECT_EQ((*placed)[0].position, 1);
  EXPECT_EQ((*placed)[1].position, 1 + 576 + 1);
  ASSERT_EQ(tokens.size(), 5u + 2 * 575);
  EXPECT_EQ(tokens[0], 1);
  EXPECT_EQ(tokens[577], 7);
  EXPECT_EQ(tokens.back(), 9);
  for (int i = 0; i < 576; ++i) {
    EXPECT_LT(tokens[1 + i], 0);
    EXPECT_EQ(tokens[1 + i], ImageKey(a->hash, i));
    EXPECT_NE(tokens[1 + i], tokens[578 + i]);  // another image, other keys
  }
  // The same bytes again: the same keys.
  auto a2 = intake->Prepare(Read("coffee.png"), "", "x");
  ASSERT_TRUE(a2.ok());
  EXPECT_EQ(a2->hash, a->hash);
}

TEST(ImageIntakeTest, CountsAndBadImagesAreErrors) {
  auto intake = ImageIntake::Create(Dir() + "/tiny-llava", TinyLlava(), {});
  ASSERT_TRUE(intake.ok());
  auto a = intake->Prepare(Read("coffee.png"), "", "images[0]");
  ASSERT_TRUE(a.ok());
  std::vector<int32_t> one = {1, 401, 2};
  EXPECT_THAT(intake->Expand(&one, {}).status().ToString(),
              HasSubstr("1 image placeholders for 0"));
  std::vector<int32_t> none = {1, 2};
  EXPECT_THAT(intake->Expand(&none, {*a}).status().ToString(),
              HasSubstr("0 image placeholders for 1"));
  const std::string png = Read("coffee.png");
  auto bad = intake->Prepare(png.substr(0, png.size() / 3), "", "images[2]");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().ToString(), HasSubstr("images[2]"));
  EXPECT_FALSE(intake->Prepare("not an image", "", "images[3]").ok());
  // A folder without image processor settings, and a model without a vision tower.
  EXPECT_FALSE(ImageIntake::Create(Dir() + "/tiny-llama", TinyLlava(), {}).ok());
  EXPECT_FALSE(ImageIntake::Create(Dir() + "/tiny-llava", ModelInfo{}, {}).ok());
}

}  // namespace
}  // namespace ite

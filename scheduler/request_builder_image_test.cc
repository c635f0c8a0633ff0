// RequestBuilder with images, on the tiny LLaVA folder of tests/data (its tokenizer, chat
// template and image processor): PromptTokens (what Tokenize answers) counts each image as the
// model's 576 positions, exactly as many tokens as Build charges, with the image token at each
// of them; raw prompts, chats and several images alike; bad images and images for a text-only
// builder are refused the same way by both.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "scheduler/request_builder.h"

namespace ite {
namespace {

constexpr int32_t kImageToken = 401;
constexpr int32_t kImagePositions = 576;

std::string DataDir() {
  const char* d = std::getenv("ITE_SOURCE_DIR");
  return std::string(d ? d : ".") + "/tests/data";
}

std::string ReadImage(const std::string& name) {
  std::ifstream in(DataDir() + "/images/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class RequestBuilderImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = DataDir() + "/tiny-llava";
    auto tok = Tokenizer::FromFile(dir);
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    std::shared_ptr<const Tokenizer> tokenizer = std::move(tok).value();
    auto tmpl = ChatTemplate::FromFile(dir);
    ASSERT_TRUE(tmpl.ok()) << tmpl.status().ToString();
    ModelInfo info;
    info.vocab_size = 402;
    info.image_token_id = kImageToken;
    info.image_tokens = kImagePositions;
    info.image_size = 336;
    auto images = ImageIntake::Create(dir, info, {});
    ASSERT_TRUE(images.ok()) << images.status().ToString();
    RequestBuilderOptions o;
    o.model_name = "tiny-llava";
    o.max_context = 2048;
    o.vocab_size = 402;
    builder_ = std::make_unique<RequestBuilder>(o, tokenizer, *tmpl, std::move(images).value());
    text_only_ = std::make_unique<RequestBuilder>(o, tokenizer, *tmpl);
  }

  // PromptTokens and Build agree on the count; PromptTokens shows the image token where Build
  // keeps the image's cache keys. Returns PromptTokens' answer.
  std::vector<int32_t> TokensAgree(const GenerateInput& in) {
    std::string rendered;
    StatusOr<std::vector<int32_t>> tokens = builder_->PromptTokens(in.prompt, &rendered);
    EXPECT_TRUE(tokens.ok()) << tokens.status().ToString();
    StatusOr<GenerationRequest> built = builder_->Build(in);
    EXPECT_TRUE(built.ok()) << built.status().ToString();
    if (!tokens.ok() || !built.ok()) return {};
    EXPECT_EQ(tokens->size(), built->prompt_tokens.size());
    for (size_t i = 0; i < tokens->size() && i < built->prompt_tokens.size(); ++i) {
      const int32_t b = built->prompt_tokens[i];
      EXPECT_EQ((*tokens)[i], b < 0 ? kImageToken : b) << "position " << i;
    }
    return std::move(tokens).value();
  }

  static size_t Count(const std::vector<int32_t>& t, int32_t id) {
    return static_cast<size_t>(std::count(t.begin(), t.end(), id));
  }

  static GenerateInput ImageChat(std::vector<std::string> images) {
    GenerateInput in;
    ChatMessage m;
    m.role = "user";
    for (std::string& bytes : images)
      m.content.push_back({ContentPart::Kind::kImage, {}, {std::move(bytes), ""}});
    m.content.push_back({ContentPart::Kind::kText, "What is shown?", {}});
    in.prompt.chat = std::vector<ChatMessage>{std::move(m)};
    return in;
  }

  std::unique_ptr<RequestBuilder> builder_;
  std::unique_ptr<RequestBuilder> text_only_;
};

TEST_F(RequestBuilderImageTest, ChatImageCountsAsTheModelsPositions) {
  const std::vector<int32_t> t = TokensAgree(ImageChat({ReadImage("astronaut.png")}));
  // transformers' processor gives 593 ids for this chat (tests/data/golden/tiny-llava.json).
  EXPECT_EQ(t.size(), 593u);
  EXPECT_EQ(Count(t, kImageToken), static_cast<size_t>(kImagePositions));
  // The positions are contiguous, where the template's <image> stood.
  auto first = std::find(t.begin(), t.end(), kImageToken);
  EXPECT_EQ(std::count(first, first + kImagePositions, kImageToken), kImagePositions);
}

TEST_F(RequestBuilderImageTest, RawPromptAndSeveralImages) {
  GenerateInput raw;
  raw.prompt.text = "USER: <image>\nWhat is shown? ASSISTANT:";
  raw.prompt.images = {{ReadImage("coffee.png"), "image/png"}};
  const std::vector<int32_t> one = TokensAgree(raw);
  EXPECT_EQ(Count(one, kImageToken), static_cast<size_t>(kImagePositions));

  raw.prompt.text = "USER: <image> and <image>\nWhat differs? ASSISTANT:";
  raw.prompt.images.push_back({ReadImage("chelsea.jpg"), ""});
  const std::vector<int32_t> two = TokensAgree(raw);
  EXPECT_EQ(Count(two, kImageToken), 2u * kImagePositions);

  const std::vector<int32_t> chat =
      TokensAgree(ImageChat({ReadImage("coffee.png"), ReadImage("rocket.png")}));
  EXPECT_EQ(Count(chat, kImageToken), 2u * kImagePositions);
}

TEST_F(RequestBuilderImageTest, TokenizeRefusesWhatGenerateRefuses) {
  const std::string png = ReadImage("coffee.png");
  const std::vector<std::pair<GenerateInput, std::string>> cases = {
      {ImageChat({png.substr(0, png.size() / 2)}), "chat.messages[0].parts[0].image"},
      {ImageChat({"not an image"}), "chat.messages[0].parts[0].image"},
      {[] {
         GenerateInput in;
         in.prompt.text = "USER: no placeholder ASSISTANT:";
         in.prompt.images = {{ReadImage("coffee.png"), ""}};
         return in;
       }(),
       "0 image placeholders for 1 images"},
  };
  for (const auto& [in, says] : cases) {
    StatusOr<std::vector<int32_t>> t = builder_->PromptTokens(in.prompt, nullptr);
    ASSERT_FALSE(t.ok()) << says;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find(says), std::string::npos) << t.status().message();
    StatusOr<GenerationRequest> b = builder_->Build(in);
    ASSERT_FALSE(b.ok()) << says;
    EXPECT_EQ(b.status().message(), t.status().message());
  }
}

TEST_F(RequestBuilderImageTest, TextOnlyModelSaysItTakesNoImages) {
  const GenerateInput in = ImageChat({ReadImage("coffee.png")});
  StatusOr<GenerationRequest> b = text_only_->Build(in);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find("model 'tiny-llava' takes no images"), std::string::npos)
      << b.status().message();
  StatusOr<std::vector<int32_t>> t = text_only_->PromptTokens(in.prompt, nullptr);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message(), b.status().message());
}

}  // namespace
}  // namespace ite

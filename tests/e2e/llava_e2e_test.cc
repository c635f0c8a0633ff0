// End to end with images: REAL ite-serve (scheduler + one CPU worker) serving the tiny random
// LLaVA of tests/data, real gRPC, the committed sample photographs:
//  - a chat request with an image gives transformers' greedy tokens (tests/data/golden);
//  - the same image again is served from the prefix cache (cached tokens > 576 image positions)
//    with the same output; another image of the same size shares only the text before it, and
//    its output differs;
//  - a corrupt image, an image for a prompt without a placeholder and an unknown format are
//    INVALID_ARGUMENT naming the image, and the server keeps serving;
//  - Tokenize counts each image as the 576 positions generation charges;
//  - ite-client generate --image (raw prompt with <image>, and --chat) and ite-generate --image.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/e2e/service_harness.h"
#include "tests/test_files.h"

namespace ite::e2e {
namespace {

using testing::SourceDir;

std::string ImagePath(const std::string& name) {
  return SourceDir() + "/tests/data/images/" + name;
}

std::string ReadImage(const std::string& name) {
  std::ifstream in(ImagePath(name), std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

nlohmann::json Golden() {
  std::ifstream in(SourceDir() + "/tests/data/golden/tiny-llava.json");
  return nlohmann::json::parse(in);
}

// The golden's chat: one user message, the image then "What is shown?".
ite::v1::GenerateRequest ImageChat(const std::string& image_bytes, int max_tokens) {
  ite::v1::GenerateRequest req;
  ite::v1::ChatMessage* m = req.mutable_chat()->add_messages();
  m->set_role("user");
  m->add_parts()->mutable_image()->set_data(image_bytes);
  m->add_parts()->set_text("What is shown?");
  req.set_max_tokens(max_tokens);
  req.mutable_sampling()->set_temperature(0.0f);
  return req;
}

class LlavaE2E : public SharedServeTest<LlavaE2E> {
 public:
  static std::string Model() { return SourceDir() + "/tests/data/tiny-llava"; }
};

TEST_F(LlavaE2E, SameImageHitsTheCacheAnotherDoesNot) {
  const nlohmann::json g = Golden();
  const auto want = g["cases"][0]["greedy"].get<std::vector<int32_t>>();
  const std::string astronaut = ReadImage("astronaut.png");

  GenerateResult first = Generate(*stub_, ImageChat(astronaut, 12));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_EQ(first.tokens, want) << "greedy tokens differ from transformers'";
  EXPECT_EQ(first.usage.prompt_tokens(), g["cases"][0]["ids"].size());

  GenerateResult again = Generate(*stub_, ImageChat(astronaut, 12));
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_GT(again.usage.cached_tokens(), 576) << "the same image must reuse its KV blocks";
  EXPECT_EQ(again.tokens, first.tokens);

  // Another photograph of the same size: only the text before the image can be shared.
  GenerateResult other = Generate(*stub_, ImageChat(ReadImage("coffee_square.png"), 12));
  ASSERT_TRUE(other.status.ok()) << other.status.error_message();
  EXPECT_LT(other.usage.cached_tokens(), 16) << "a different image must not hit the cache";
  EXPECT_NE(other.tokens, first.tokens);
}

TEST_F(LlavaE2E, BadImagesAreInvalidArgumentAndTheServerKeepsServing) {
  const std::string png = ReadImage("coffee.png");
  GenerateResult corrupt = Generate(*stub_, ImageChat(png.substr(0, png.size() / 2), 4));
  EXPECT_EQ(corrupt.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(corrupt.status.error_message().find("chat.messages[0].parts[0].image"),
            std::string::npos)
      << corrupt.status.error_message();

  GenerateResult text = Generate(*stub_, ImageChat("GIF89a but not really", 4));
  EXPECT_EQ(text.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // A raw prompt with an image but no <image> placeholder.
  ite::v1::GenerateRequest raw = Greedy("USER: hello ASSISTANT:", 4);
  raw.add_images()->set_data(png);
  GenerateResult unplaced = Generate(*stub_, raw);
  EXPECT_EQ(unplaced.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(unplaced.status.error_message().find("0 image placeholders for 1"), std::string::npos)
      << unplaced.status.error_message();

  GenerateResult ok = Generate(*stub_, ImageChat(png, 4));
  ASSERT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.tokens.size(), 4u);
}

// Tokenize counts what generation charges: each image as its 576 positions.
TEST_F(LlavaE2E, TokenizeCountsImagePositionsAsGenerateDoes) {
  const std::string png = ReadImage("coffee.png");
  GenerateResult generated = Generate(*stub_, ImageChat(png, 2));
  ASSERT_TRUE(generated.status.ok()) << generated.status.error_message();

  ite::v1::TokenizeRequest chat;
  *chat.mutable_chat() = ImageChat(png, 2).chat();
  chat.set_return_tokens(true);
  ite::v1::TokenizeResponse tokens;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Tokenize(&ctx, chat, &tokens).ok());
  EXPECT_EQ(tokens.token_ids_size(), generated.usage.prompt_tokens());
  EXPECT_EQ(std::count(tokens.token_ids().begin(), tokens.token_ids().end(), 401), 576);
  EXPECT_EQ(std::count(tokens.tokens().begin(), tokens.tokens().end(), "<image>"), 576);

  // A raw prompt with two images.
  ite::v1::TokenizeRequest raw;
  raw.set_text("USER: <image><image>\nWhat differs? ASSISTANT:");
  raw.add_images()->set_data(png);
  raw.add_images()->set_data(ReadImage("chelsea.jpg"));
  grpc::ClientContext ctx2;
  ASSERT_TRUE(stub_->Tokenize(&ctx2, raw, &tokens).ok());
  EXPECT_EQ(std::count(tokens.token_ids().begin(), tokens.token_ids().end(), 401), 2 * 576);

  // A corrupt image: INVALID_ARGUMENT naming it, as Generate says.
  raw.mutable_images(1)->set_data(png.substr(0, png.size() / 3));
  grpc::ClientContext ctx3;
  const grpc::Status bad = stub_->Tokenize(&ctx3, raw, &tokens);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad.error_message().find("images[1]"), std::string::npos) << bad.error_message();
}

TEST_F(LlavaE2E, CommandLineClientsTakeImages) {
  std::string out;
  const std::string client = env_->bin_dir + "/ite-client generate --addr " + serve_->address() +
                             " --max-tokens 6 --temperature 0 ";
  // A raw prompt marks the image's place itself.
  ASSERT_EQ(RunCommand(client + "--prompt 'USER: <image>\nWhat is shown? ASSISTANT:' --image " +
                           ImagePath("coffee.png"),
                       &out),
            0);
  EXPECT_FALSE(out.empty());
  ASSERT_EQ(
      RunCommand(client + "--chat --prompt 'What is shown?' --image " + ImagePath("coffee.png"),
                 &out),
      0);
  // Interactive chat: /image adds the image to the next message (593 prompt tokens with it,
  // 17 without).
  out.clear();
  ASSERT_EQ(RunCommand("printf '/image " + ImagePath("coffee.png") + "\\nWhat is shown?\\n' | " +
                           env_->bin_dir + "/ite-client chat --usage --addr " + serve_->address() +
                           " --max-tokens 4 --temperature 0 2>&1",
                       &out),
            0);
  EXPECT_NE(out.find("prompt 593 tokens"), std::string::npos) << out;
  // A truncated file: exit code 4 (the server rejected the request).
  {
    const std::string png = ReadImage("coffee.png");
    TempDir dir;
    const std::string path = dir.path() + "/cut.png";
    std::ofstream(path, std::ios::binary) << png.substr(0, png.size() / 2);
    EXPECT_EQ(RunCommand(client + "--prompt '<image>' --image " + path + " 2>/dev/null", &out), 4);
  }

  // Offline: ite-generate gives transformers' greedy tokens for the golden's chat.
  const nlohmann::json g = Golden();
  out.clear();  // RunCommand appends
  ASSERT_EQ(RunCommand(env_->bin_dir + "/ite-generate --model " + env_->model +
                           " --chat --prompt 'What is shown?' --image " + ImagePath("coffee.png") +
                           " --max-tokens 12 --temperature 0 --threads 1 --output ids 2>/dev/null",
                       &out),
            0);
  EXPECT_EQ(nlohmann::json::parse(out).get<std::vector<int32_t>>(),
            g["cases"][1]["greedy"].get<std::vector<int32_t>>());
}

}  // namespace
}  // namespace ite::e2e

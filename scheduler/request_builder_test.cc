// RequestBuilder: every malformed Generate request is INVALID_ARGUMENT with a message naming the
// field; valid ones tokenize exactly like the tokenizer. Uses the real SmolLM2 GGUF (tokenizer +
// chat template), which ctest passes in ITE_MODEL_GGUF.
#include "scheduler/request_builder.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

namespace ite {
namespace {

class RequestBuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* path = std::getenv("ITE_MODEL_GGUF");
#ifdef ITE_TEST_DEFAULT_MODEL_GGUF
    // ctest passes only the first variable of ITE_TEST_ENV through gtest_discover_tests.
    if (path == nullptr) path = ITE_TEST_DEFAULT_MODEL_GGUF;
#endif
    if (path == nullptr || !std::filesystem::exists(path)) {
      GTEST_SKIP() << "ITE_MODEL_GGUF not set or missing (scripts/fetch_model.sh fetches it)";
    }
    auto tok = Tokenizer::FromFile(path);
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    tokenizer_ = std::move(tok).value();
    auto tmpl = ChatTemplate::FromGguf(path);
    ASSERT_TRUE(tmpl.ok()) << tmpl.status().ToString();
    RequestBuilderOptions o;
    o.model_name = "smollm2";
    o.max_context = 64;
    o.vocab_size = tokenizer_->vocab_size();
    builder_ = std::make_unique<RequestBuilder>(o, tokenizer_, std::move(tmpl).value());
    no_chat_ = std::make_unique<RequestBuilder>(o, tokenizer_, std::nullopt);
  }

  // Expects INVALID_ARGUMENT whose message contains `field`.
  void ExpectInvalid(const ite::v1::GenerateRequest& r, const std::string& field,
                     RequestBuilder* b = nullptr) {
    StatusOr<GenerationRequest> out = (b ? b : builder_.get())->Build(r);
    ASSERT_FALSE(out.ok()) << "accepted: " << r.ShortDebugString();
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument) << out.status().ToString();
    EXPECT_NE(out.status().message().find(field), std::string::npos)
        << "message '" << out.status().message() << "' does not name " << field;
  }

  static ite::v1::GenerateRequest Prompt(const std::string& text) {
    ite::v1::GenerateRequest r;
    r.set_prompt(text);
    return r;
  }

  std::shared_ptr<const Tokenizer> tokenizer_;
  std::unique_ptr<RequestBuilder> builder_;
  std::unique_ptr<RequestBuilder> no_chat_;
};

TEST_F(RequestBuilderTest, ValidPromptTokenizesLikeTheTokenizer) {
  ite::v1::GenerateRequest r = Prompt("The capital of France is");
  r.set_max_tokens(5);
  r.mutable_sampling()->set_temperature(0.0f);
  r.mutable_sampling()->set_seed(7);
  r.add_stop("\n");
  r.set_priority(3);
  r.set_disable_prefix_cache(true);
  StatusOr<GenerationRequest> out = builder_->Build(r);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->prompt_tokens, tokenizer_->Encode("The capital of France is", true));
  EXPECT_EQ(out->max_tokens, 5);
  EXPECT_EQ(out->sampling.temperature, 0.0f);
  EXPECT_TRUE(out->sampling.has_seed);
  EXPECT_EQ(out->sampling.seed, 7u);
  EXPECT_EQ(out->stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(out->priority, 3);
  EXPECT_FALSE(out->use_prefix_cache);
  // Defaults when unset.
  StatusOr<GenerationRequest> d = builder_->Build(Prompt("hi"));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->max_tokens, 256);
  EXPECT_EQ(d->sampling.temperature, 1.0f);
  EXPECT_EQ(d->sampling.top_p, 1.0f);
  EXPECT_FALSE(d->sampling.has_seed);
  EXPECT_TRUE(d->use_prefix_cache);
}

TEST_F(RequestBuilderTest, UnsetSamplingFieldsTakeTheModelsDefaults) {
  RequestBuilderOptions o;
  o.vocab_size = tokenizer_->vocab_size();
  o.default_sampling.temperature = 0.6f;  // as a generation_config.json would give them
  o.default_sampling.top_p = 0.9f;
  o.default_sampling.top_k = 20;
  o.default_sampling.repetition_penalty = 1.1f;
  RequestBuilder b(o, tokenizer_, std::nullopt);
  StatusOr<GenerationRequest> d = b.Build(Prompt("hi"));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->sampling.temperature, 0.6f);
  EXPECT_EQ(d->sampling.top_p, 0.9f);
  EXPECT_EQ(d->sampling.top_k, 20);
  EXPECT_EQ(d->sampling.repetition_penalty, 1.1f);
  // The request's own values win, greedy included.
  ite::v1::GenerateRequest r = Prompt("hi");
  r.mutable_sampling()->set_temperature(0.0f);
  r.mutable_sampling()->set_top_p(0.5f);
  r.mutable_sampling()->set_top_k(3);
  r.mutable_sampling()->set_repetition_penalty(1.0f);
  StatusOr<GenerationRequest> out = b.Build(r);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->sampling.temperature, 0.0f);
  EXPECT_EQ(out->sampling.top_p, 0.5f);
  EXPECT_EQ(out->sampling.top_k, 3);
  EXPECT_EQ(out->sampling.repetition_penalty, 1.0f);
}

TEST_F(RequestBuilderTest, ChatIsRenderedWithTheTemplate) {
  ite::v1::GenerateRequest r;
  auto* m = r.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("Hello!");
  StatusOr<GenerationRequest> out = builder_->Build(r);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  std::string text = tokenizer_->Decode(out->prompt_tokens, false);
  EXPECT_NE(text.find("Hello!"), std::string::npos) << text;
  EXPECT_NE(text.find("<|im_start|>assistant"), std::string::npos) << text;
  ExpectInvalid(r, "chat template", no_chat_.get());
}

TEST_F(RequestBuilderTest, BadRequestsNameTheField) {
  ExpectInvalid(ite::v1::GenerateRequest(), "prompt");
  ExpectInvalid(Prompt(""), "prompt");
  ExpectInvalid(Prompt("ab\xff\xfe"), "UTF-8");
  ExpectInvalid(Prompt("\xc0\xaf"), "UTF-8");      // overlong '/'
  ExpectInvalid(Prompt("\xed\xa0\x80"), "UTF-8");  // surrogate
  std::string longp;
  for (int i = 0; i < 200; ++i) longp += " word";
  ExpectInvalid(Prompt(longp), "context");

  ite::v1::GenerateRequest r = Prompt("hi");
  r.set_max_tokens(0);
  ExpectInvalid(r, "max_tokens");
  r = Prompt("hi");
  r.mutable_sampling()->set_top_p(0.0f);
  ExpectInvalid(r, "top_p");
  r.mutable_sampling()->set_top_p(1.5f);
  ExpectInvalid(r, "top_p");
  r = Prompt("hi");
  r.mutable_sampling()->set_temperature(-1.0f);
  ExpectInvalid(r, "temperature");
  r = Prompt("hi");
  r.mutable_sampling()->set_top_k(-2);
  ExpectInvalid(r, "top_k");
  r = Prompt("hi");
  r.mutable_sampling()->set_min_p(2.0f);
  ExpectInvalid(r, "min_p");
  r = Prompt("hi");
  r.set_top_logprobs(1000);
  ExpectInvalid(r, "top_logprobs");
  r = Prompt("hi");
  r.set_model("gpt-4");
  ExpectInvalid(r, "model");
  r = Prompt("hi");
  r.add_stop("");
  ExpectInvalid(r, "stop");
  r = ite::v1::GenerateRequest();
  r.mutable_prompt_token_ids()->add_ids(tokenizer_->vocab_size());
  ExpectInvalid(r, "prompt_token_ids");
  r = ite::v1::GenerateRequest();
  auto* m = r.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("bad \xff");
  ExpectInvalid(r, "content");
  r = ite::v1::GenerateRequest();
  r.mutable_chat();
  ExpectInvalid(r, "chat");
}

TEST(Utf8Test, Validation) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\x80"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\x80"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xf5\x80\x80\x80"));
}

}  // namespace
}  // namespace ite

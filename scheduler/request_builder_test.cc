// RequestBuilder: every malformed request is INVALID_ARGUMENT with a message naming the field;
// valid ones tokenize exactly like the tokenizer. Uses the real SmolLM2 GGUF (tokenizer + chat
// template), which ctest passes in ITE_MODEL_GGUF.
#include "scheduler/request_builder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <random>

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
    path_ = path;
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
  void ExpectInvalid(const GenerateInput& r, const std::string& field,
                     RequestBuilder* b = nullptr) {
    StatusOr<GenerationRequest> out = (b ? b : builder_.get())->Build(r);
    ASSERT_FALSE(out.ok()) << "accepted a request that names " << field;
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument) << out.status().ToString();
    EXPECT_NE(out.status().message().find(field), std::string::npos)
        << "message '" << out.status().message() << "' does not name " << field;
  }

  static GenerateInput Prompt(const std::string& text) {
    GenerateInput r;
    r.prompt.text = text;
    return r;
  }
  static GenerateInput Chat(const std::string& content) {
    GenerateInput r;
    r.prompt.chat = {ChatMessage::Text("user", content)};
    return r;
  }

  const std::string& ModelPath() const { return path_; }

  std::string path_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::unique_ptr<RequestBuilder> builder_;
  std::unique_ptr<RequestBuilder> no_chat_;
};

TEST_F(RequestBuilderTest, ValidPromptTokenizesLikeTheTokenizer) {
  GenerateInput r = Prompt("The capital of France is");
  r.max_tokens = 5;
  r.sampling.temperature = 0.0f;
  r.sampling.seed = 7;
  r.stop = {"\n"};
  r.priority = 3;
  r.disable_prefix_cache = true;
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
  GenerateInput r = Prompt("hi");
  r.sampling.temperature = 0.0f;
  r.sampling.top_p = 0.5f;
  r.sampling.top_k = 3;
  r.sampling.repetition_penalty = 1.0f;
  StatusOr<GenerationRequest> out = b.Build(r);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->sampling.temperature, 0.0f);
  EXPECT_EQ(out->sampling.top_p, 0.5f);
  EXPECT_EQ(out->sampling.top_k, 3);
  EXPECT_EQ(out->sampling.repetition_penalty, 1.0f);
  // An explicit "off" (HTTP's top_k 0 / -1) wins over the model's top_k too.
  r.sampling.top_k = 0;
  out = b.Build(r);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->sampling.top_k, 0);
}

TEST_F(RequestBuilderTest, ChatIsRenderedWithTheTemplate) {
  GenerateInput r = Chat("Hello!");
  StatusOr<GenerationRequest> out = builder_->Build(r);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  std::string text = tokenizer_->Decode(out->prompt_tokens, false);
  EXPECT_NE(text.find("Hello!"), std::string::npos) << text;
  EXPECT_NE(text.find("<|im_start|>assistant"), std::string::npos) << text;
  ExpectInvalid(r, "chat template", no_chat_.get());
}

TEST_F(RequestBuilderTest, BadRequestsNameTheField) {
  ExpectInvalid(GenerateInput(), "prompt");
  ExpectInvalid(Prompt(""), "prompt");
  ExpectInvalid(Prompt("ab\xff\xfe"), "UTF-8");
  ExpectInvalid(Prompt("\xc0\xaf"), "UTF-8");      // overlong '/'
  ExpectInvalid(Prompt("\xed\xa0\x80"), "UTF-8");  // surrogate
  std::string longp;
  for (int i = 0; i < 200; ++i) longp += " word";
  ExpectInvalid(Prompt(longp), "context");

  GenerateInput r = Prompt("hi");
  r.max_tokens = 0;
  ExpectInvalid(r, "max_tokens");
  r = Prompt("hi");
  r.sampling.top_p = 0.0f;
  ExpectInvalid(r, "top_p");
  r.sampling.top_p = 1.5f;
  ExpectInvalid(r, "top_p");
  r = Prompt("hi");
  r.sampling.temperature = -1.0f;
  ExpectInvalid(r, "temperature");
  r = Prompt("hi");
  r.sampling.top_k = -2;
  ExpectInvalid(r, "top_k");
  r = Prompt("hi");
  r.sampling.min_p = 2.0f;
  ExpectInvalid(r, "min_p");
  r = Prompt("hi");
  r.top_logprobs = 1000;
  ExpectInvalid(r, "top_logprobs");
  r = Prompt("hi");
  r.model = "gpt-4";
  ExpectInvalid(r, "model");
  r = Prompt("hi");
  r.stop = {""};
  ExpectInvalid(r, "stop");
  r.stop = {"\xff"};
  ExpectInvalid(r, "stop[0]");
  r = Prompt("hi");
  r.max_tokens = 4;
  r.min_tokens = 5;
  ExpectInvalid(r, "min_tokens");
  r.min_tokens = -1;
  ExpectInvalid(r, "min_tokens");
  r = GenerateInput();
  r.prompt.token_ids = std::vector<int32_t>{tokenizer_->vocab_size()};
  ExpectInvalid(r, "prompt_token_ids");
  r.prompt.token_ids = std::vector<int32_t>{};
  ExpectInvalid(r, "prompt_token_ids");
  ExpectInvalid(Chat("bad \xff"), "content");
  r = Chat("hi");
  r.prompt.chat->front().role = "";
  ExpectInvalid(r, "role");
  r = GenerateInput();
  r.prompt.chat.emplace();
  ExpectInvalid(r, "chat");
}

TEST_F(RequestBuilderTest, TextPartsAreJoinedWithNewlines) {
  GenerateInput parts = Chat("first");
  parts.prompt.chat->front().content.push_back({ContentPart::Kind::kText, "second", {}});
  StatusOr<GenerationRequest> a = builder_->Build(parts);
  StatusOr<GenerationRequest> b = builder_->Build(Chat("first\nsecond"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->prompt_tokens, b->prompt_tokens);
}

TEST_F(RequestBuilderTest, StopOptionsPassThrough) {
  GenerateInput r = Prompt("hi");
  r.max_tokens = 8;
  r.min_tokens = 3;
  r.include_stop_str_in_output = true;
  r.stop_token_ids = {5};
  StatusOr<GenerationRequest> out = builder_->Build(r);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->min_tokens, 3);
  EXPECT_TRUE(out->include_stop_str_in_output);
  EXPECT_EQ(out->stop_token_ids, std::vector<int32_t>{5});
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

// Counts what reaches the tokenizer, to show a huge prompt is turned away before it.
class CountingTokenizer : public Tokenizer {
 public:
  explicit CountingTokenizer(std::shared_ptr<const Tokenizer> inner) : inner_(std::move(inner)) {}
  std::vector<int32_t> Encode(std::string_view text, bool add_special) const override {
    largest_encoded = std::max(largest_encoded, text.size());
    return inner_->Encode(text, add_special);
  }
  std::string Decode(std::span<const int32_t> ids, bool skip) const override {
    return inner_->Decode(ids, skip);
  }
  int32_t vocab_size() const override { return inner_->vocab_size(); }
  int32_t bos_id() const override { return inner_->bos_id(); }
  std::vector<int32_t> eos_ids() const override { return inner_->eos_ids(); }
  std::optional<int32_t> TokenToId(std::string_view t) const override {
    return inner_->TokenToId(t);
  }
  std::string IdToToken(int32_t id) const override { return inner_->IdToToken(id); }
  bool IsSpecial(int32_t id) const override { return inner_->IsSpecial(id); }

  mutable size_t largest_encoded = 0;

 private:
  std::shared_ptr<const Tokenizer> inner_;
};

TEST_F(RequestBuilderTest, HugePromptIsRejectedBeforeTokenizing) {
  auto counting = std::make_shared<CountingTokenizer>(tokenizer_);
  RequestBuilderOptions o = builder_->options();
  auto tmpl = ChatTemplate::FromGguf(ModelPath());
  ASSERT_TRUE(tmpl.ok());
  RequestBuilder b(o, counting, std::move(tmpl).value());
  ASSERT_GT(b.max_token_bytes(), 1u);
  const size_t limit = static_cast<size_t>(o.max_context - 1) * b.max_token_bytes();
  const std::string huge(8 << 20, 'a');  // 8 MiB: far past 64 tokens
  ExpectInvalid(Prompt(huge), "prompt", &b);
  ExpectInvalid(Chat(huge), "chat.messages", &b);
  EXPECT_EQ(counting->largest_encoded, 0u) << "the huge prompt reached the tokenizer";

  // Just past the bound: still turned away untokenized. At the bound: tokenized, and then
  // rejected by its token count (the bound never rejects a text that could fit).
  ExpectInvalid(Prompt(std::string(limit + 1, 'a')), "prompt", &b);
  EXPECT_EQ(counting->largest_encoded, 0u);
  StatusOr<GenerationRequest> at = b.Build(Prompt(std::string(limit, 'a')));
  EXPECT_EQ(counting->largest_encoded, limit);
  ASSERT_FALSE(at.ok());
  EXPECT_NE(at.status().message().find("tokens leave no room"), std::string::npos)
      << at.status().message();
  EXPECT_TRUE(b.Build(Prompt("Hello")).ok());
}

// The bound is sound: no text of the vocabulary's own tokens takes fewer tokens than
// bytes / max_token_bytes.
TEST_F(RequestBuilderTest, MaxTokenBytesBoundsEveryTokenization) {
  std::mt19937 rng(5);
  const int32_t vocab = tokenizer_->vocab_size();
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int32_t> ids;
    for (int i = 0; i < 32; ++i) ids.push_back(static_cast<int32_t>(rng() % vocab));
    const std::string text = tokenizer_->Decode(ids, false);
    const size_t tokens = tokenizer_->Encode(text, false).size();
    EXPECT_GE(tokens * builder_->max_token_bytes(), text.size()) << "trial " << trial;
  }
}

}  // namespace
}  // namespace ite

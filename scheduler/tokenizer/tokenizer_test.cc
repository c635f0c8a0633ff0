// Tokenizer on the real files in $ITE_SHARED_DIR/tokenizers and the SmolLM2 GGUF: loading
// variants, config-derived BOS/EOS, invalid UTF-8 handling and the IncrementalDecoder.
#include "scheduler/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "scheduler/tokenizer/utf8_util.h"

namespace ite {
namespace {

// The environment wins; the configure-time paths are the fallback (ctest's gtest discovery may
// not pass every variable of ITE_TEST_ENV).
std::string SharedTokenizer(const std::string& name) {
  const char* dir = std::getenv("ITE_SHARED_DIR");
  return std::string(dir ? dir : ITE_TEST_SHARED_DIR) + "/tokenizers/" + name;
}

std::string ModelGguf() {
  const char* path = std::getenv("ITE_MODEL_GGUF");
  return path ? path : ITE_TEST_MODEL_GGUF;
}

std::unique_ptr<Tokenizer> LoadOrNull(const std::string& path) {
  if (!std::filesystem::exists(path)) return nullptr;
  auto tok = Tokenizer::FromFile(path);
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

#define LOAD_OR_SKIP(var, path) \
  auto var = LoadOrNull(path);  \
  if (var == nullptr) GTEST_SKIP() << (path) << " is not available"

TEST(TokenizerTest, Llama3JsonBasics) {
  LOAD_OR_SKIP(tok, SharedTokenizer("llama3/tokenizer.json"));
  EXPECT_EQ(tok->vocab_size(), 128256);
  EXPECT_EQ(tok->TokenToId("<|begin_of_text|>"), 128000);
  EXPECT_EQ(tok->IdToToken(128000), "<|begin_of_text|>");
  EXPECT_TRUE(tok->IsSpecial(128000));
  EXPECT_FALSE(tok->IsSpecial(9906));
  // Values checked against HF tokenizers 0.23 (Tokenizer.from_file(...).encode).
  EXPECT_EQ(tok->Encode("Hello world", false), (std::vector<int32_t>{9906, 1917}));
  EXPECT_EQ(tok->Encode("<|begin_of_text|>Hi", false), (std::vector<int32_t>{128000, 13347}));
  // The bundled tokenizer_config.json names the BOS/EOS tokens.
  EXPECT_EQ(tok->bos_id(), 128000);
  EXPECT_EQ(tok->eos_ids(), (std::vector<int32_t>{128001}));
}

TEST(TokenizerTest, HfFolderReadsConfigs) {
  LOAD_OR_SKIP(llama2, SharedTokenizer("llama2"));
  EXPECT_EQ(llama2->bos_id(), 1);
  EXPECT_EQ(llama2->eos_ids(), (std::vector<int32_t>{2}));
  const auto ids = llama2->Encode("Hello", true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), 1);  // add_bos_token
  LOAD_OR_SKIP(qwen3, SharedTokenizer("qwen3"));
  EXPECT_EQ(qwen3->bos_id(), -1);  // bos_token: null
  EXPECT_EQ(qwen3->eos_ids(), (std::vector<int32_t>{*qwen3->TokenToId("<|im_end|>")}));
  EXPECT_EQ(qwen3->Encode("Hi", true), qwen3->Encode("Hi", false));
}

TEST(TokenizerTest, GgufVocabulary) {
  LOAD_OR_SKIP(tok, ModelGguf());
  EXPECT_EQ(tok->vocab_size(), 49152);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_ids(), (std::vector<int32_t>{2}));
  EXPECT_TRUE(tok->IsSpecial(2));
  EXPECT_EQ(tok->Encode("<|im_start|>user", false).front(), 1);
  EXPECT_EQ(tok->Encode("x", true), tok->Encode("x", false));  // add_bos_token is false
  EXPECT_EQ(tok->Decode(tok->Encode("Hello 123 world!", false), false), "Hello 123 world!");
}

// Invalid UTF-8 is replaced by U+FFFD (one per maximal invalid subsequence) before encoding, so
// it encodes exactly as the sanitized text does and decodes to it.
TEST(TokenizerTest, InvalidUtf8BecomesReplacementCharacter) {
  for (const char* name : {"llama3/tokenizer.json", "llama2/tokenizer.json"}) {
    LOAD_OR_SKIP(tok, SharedTokenizer(name));
    const std::string bad = "ab\xFF\xE2\x82 c\xED\xA0\x80";
    const std::string clean = utf8::Sanitize(bad);
    EXPECT_EQ(clean, "ab\xEF\xBF\xBD\xEF\xBF\xBD c\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
    EXPECT_EQ(tok->Encode(bad, false), tok->Encode(clean, false)) << name;
    EXPECT_EQ(tok->Decode(tok->Encode(bad, false), false), clean) << name;
  }
}

// Streams ids one by one: every chunk is valid UTF-8 (never half a character) and the chunks
// add up to the full decode, for byte-level and SentencePiece (leading space) tokenizers.
TEST(TokenizerTest, IncrementalDecoderMatchesFullDecode) {
  const std::string texts[] = {
      "Hello world",
      " leading space and  two",
      "日本語のテキスト 😀 👨‍👩‍👧 done",
      "emoji🔥🔥in words é e\xCC\x81",
      "<|im_start|>user\nHi<|im_end|> <s> x </s>",
      "\n\n  \t x",
  };
  for (const char* name :
       {"llama3/tokenizer.json", "qwen3/tokenizer.json", "llama2/tokenizer.json"}) {
    LOAD_OR_SKIP(tok, SharedTokenizer(name));
    for (bool skip : {false, true}) {
      for (const std::string& text : texts) {
        const std::vector<int32_t> ids = tok->Encode(text, true);
        IncrementalDecoder dec(*tok, skip);
        std::string streamed;
        int held = 0;  // pushes that returned nothing (a character still incomplete)
        for (int32_t id : ids) {
          const std::string chunk = dec.Push(id);
          EXPECT_TRUE(utf8::IsValid(chunk)) << name << " " << text;
          EXPECT_EQ(chunk.find("\xEF\xBF\xBD"), std::string::npos) << name << " " << text;
          held += chunk.empty() ? 1 : 0;
          streamed += chunk;
        }
        streamed += dec.Flush();
        EXPECT_EQ(streamed, tok->Decode(ids, skip)) << name << " skip=" << skip << " " << text;
        (void)held;
      }
    }
  }
}

TEST(TokenizerTest, IncrementalDecoderHoldsSplitCharacters) {
  LOAD_OR_SKIP(tok, SharedTokenizer("llama2/tokenizer.json"));
  // Llama 2 has no piece for U+1F9A9, so it is four <0xXX> byte tokens.
  const std::vector<int32_t> ids = tok->Encode("\xF0\x9F\xA6\xA9", false);
  ASSERT_GE(ids.size(), 4u);
  IncrementalDecoder dec(*tok);
  std::vector<std::string> chunks;
  for (int32_t id : ids) chunks.push_back(dec.Push(id));
  for (size_t i = 0; i + 1 < chunks.size(); ++i) EXPECT_EQ(chunks[i], "") << i;
  EXPECT_EQ(chunks.back(), "\xF0\x9F\xA6\xA9");
  EXPECT_EQ(dec.Flush(), "");
}

TEST(TokenizerTest, IncrementalDecoderFlushesIncompleteTail) {
  LOAD_OR_SKIP(tok, SharedTokenizer("llama2/tokenizer.json"));
  const std::vector<int32_t> ids = tok->Encode("a\xF0\x9F\xA6\xA9", false);
  IncrementalDecoder dec(*tok);
  std::string out;
  for (size_t i = 0; i + 1 < ids.size(); ++i) out += dec.Push(ids[i]);  // drop the last byte
  EXPECT_EQ(out, "a");
  EXPECT_EQ(dec.Flush(), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // HF: one U+FFFD per byte
}

}  // namespace
}  // namespace ite

namespace ite {
namespace {

// Encode/Decode are const and may run on several threads at once (shared word cache).
TEST(TokenizerTest, ConcurrentEncodeMatchesSerial) {
  LOAD_OR_SKIP(tok, SharedTokenizer("llama3/tokenizer.json"));
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) {
    texts.push_back("thread test " + std::to_string(i * 7919) + " words w" + std::to_string(i) +
                    " \xE6\x97\xA5\xE6\x9C\xAC " + std::string(i % 13, ' ') + "end");
  }
  std::vector<std::vector<int32_t>> want;
  for (const auto& t : texts) want.push_back(tok->Encode(t, false));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int th = 0; th < 4; ++th) {
    threads.emplace_back([&, th] {
      for (int rep = 0; rep < 5; ++rep) {
        for (size_t i = th; i < texts.size(); i += 1) {
          if (tok->Encode(texts[i], false) != want[i]) ++mismatches;
          if (tok->Decode(want[i], false) != texts[i]) ++mismatches;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace ite

namespace ite {
namespace {

// A model emitting invalid bytes still streams: a trailing U+FFFD is held at most 8 pushes.
TEST(TokenizerTest, IncrementalDecoderDoesNotHoldInvalidBytesForever) {
  LOAD_OR_SKIP(tok, SharedTokenizer("llama2/tokenizer.json"));
  const auto ff = tok->TokenToId("<0xFF>");
  ASSERT_TRUE(ff.has_value());
  IncrementalDecoder dec(*tok);
  std::string streamed;
  int first_output = -1;
  for (int i = 0; i < 20; ++i) {
    const std::string chunk = dec.Push(*ff);
    if (!chunk.empty() && first_output < 0) first_output = i;
    streamed += chunk;
  }
  EXPECT_EQ(first_output, 8);
  streamed += dec.Flush();
  const std::vector<int32_t> ids(20, *ff);
  EXPECT_EQ(streamed, tok->Decode(ids, true));
}

}  // namespace
}  // namespace ite

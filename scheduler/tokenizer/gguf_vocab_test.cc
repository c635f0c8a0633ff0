// GGUF vocabularies: a SentencePiece ("llama") vocabulary built in memory (no such model is in
// the test data), plus error paths. The GPT-2 style path is checked against HF on SmolLM2's GGUF
// by tests/tokenizer/compare_hf.py.
#include "scheduler/tokenizer/gguf_vocab.h"

#include <gtest/gtest.h>

#include <cstring>

#include "scheduler/tokenizer/bpe_tokenizer.h"

namespace ite {
namespace {

// Writes GGUF v3 metadata (no tensors).
class GgufBuilder {
 public:
  void String(const std::string& key, const std::string& v) {
    Key(key, 8);
    Str(v);
    ++n_;
  }
  void Bool(const std::string& key, bool v) {
    Key(key, 7);
    body_.push_back(v ? 1 : 0);
    ++n_;
  }
  void U32(const std::string& key, uint32_t v) {
    Key(key, 4);
    Raw(v);
    ++n_;
  }
  void Strings(const std::string& key, const std::vector<std::string>& v) {
    Key(key, 9);
    Raw(uint32_t{8});
    Raw(uint64_t{v.size()});
    for (const auto& s : v) Str(s);
    ++n_;
  }
  void Floats(const std::string& key, const std::vector<float>& v) {
    Key(key, 9);
    Raw(uint32_t{6});
    Raw(uint64_t{v.size()});
    for (float f : v) Raw(f);
    ++n_;
  }
  void Ints(const std::string& key, const std::vector<int32_t>& v) {
    Key(key, 9);
    Raw(uint32_t{5});
    Raw(uint64_t{v.size()});
    for (int32_t i : v) Raw(i);
    ++n_;
  }
  std::vector<uint8_t> Build() const {
    std::vector<uint8_t> out = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
    auto put = [&](uint64_t v) {
      for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
    };
    put(0);
    put(n_);
    out.insert(out.end(), body_.begin(), body_.end());
    while (out.size() % 32 != 0) out.push_back(0);
    return out;
  }

 private:
  template <typename T>
  void Raw(T v) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    body_.insert(body_.end(), b, b + sizeof(T));
  }
  void Str(const std::string& s) {
    Raw(uint64_t{s.size()});
    body_.insert(body_.end(), s.begin(), s.end());
  }
  void Key(const std::string& k, uint32_t type) {
    Str(k);
    Raw(type);
  }
  std::vector<uint8_t> body_;
  uint64_t n_ = 0;
};

struct Piece {
  std::string text;
  float score;
  int32_t type;
};

const std::vector<Piece>& SpmPieces() {
  static const std::vector<Piece> pieces = {
      {"<unk>", 0, 2},     {"<s>", 0, 3},          {"</s>", 0, 3}, {"<0x21>", 0, 6},
      {"\u2581", -50, 1},  {"h", -60, 1},          {"e", -60, 1},  {"l", -60, 1},
      {"o", -60, 1},       {"w", -60, 1},          {"r", -60, 1},  {"d", -60, 1},
      {"\u2581h", -1, 1},  {"ll", -2, 1},          {"he", -3, 1},  {"llo", -4, 1},
      {"\u2581he", -5, 1}, {"\u2581hello", -6, 1},
  };
  return pieces;
}

StatusOr<std::unique_ptr<BpeTokenizer>> SpmTokenizer(std::vector<uint8_t>& storage) {
  GgufBuilder b;
  b.String("tokenizer.ggml.model", "llama");
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (const Piece& p : SpmPieces()) {
    tokens.push_back(p.text);
    scores.push_back(p.score);
    types.push_back(p.type);
  }
  b.Strings("tokenizer.ggml.tokens", tokens);
  b.Floats("tokenizer.ggml.scores", scores);
  b.Ints("tokenizer.ggml.token_type", types);
  b.U32("tokenizer.ggml.bos_token_id", 1);
  b.U32("tokenizer.ggml.eos_token_id", 2);
  storage = b.Build();
  auto file = ParseGgufBuffer(storage.data(), storage.size(), "spm.gguf");
  if (!file.ok()) return file.status();
  auto spec = SpecFromGguf(**file);
  if (!spec.ok()) return spec.status();
  return BpeTokenizer::Create(std::move(spec).value());
}

int32_t Id(const std::string& piece) {
  const auto& p = SpmPieces();
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i].text == piece) return static_cast<int32_t>(i);
  }
  return -1;
}

TEST(GgufVocabTest, SentencePieceMergesFollowScores) {
  std::vector<uint8_t> storage;
  auto tok = SpmTokenizer(storage);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  // ▁h (-1), then ll (-2), llo (-4), ▁he (-5), ▁hello (-6); "world" has no merges.
  const std::vector<int32_t> want = {Id("\u2581hello"), Id("\u2581"), Id("w"), Id("o"),
                                     Id("r"),           Id("l"),      Id("d"), Id("<0x21>")};
  EXPECT_EQ((*tok)->Encode("hello world!", false), want);
  EXPECT_EQ((*tok)->Decode(want, false), "hello world!");
  // add_bos_token defaults to true for "llama" vocabularies.
  EXPECT_EQ((*tok)->Encode("hello", true), (std::vector<int32_t>{1, Id("\u2581hello")}));
  // Control tokens in text are special; unknown characters fuse into one <unk>.
  EXPECT_EQ((*tok)->Encode("<s>\xC3\xA9\xC3\xA9", false),
            (std::vector<int32_t>{1, Id("\u2581"), 0}));
  EXPECT_EQ((*tok)->bos_id(), 1);
  EXPECT_EQ((*tok)->eos_ids(), (std::vector<int32_t>{2}));
  EXPECT_TRUE((*tok)->IsSpecial(2));
}

TEST(GgufVocabTest, ErrorsNameTheFileAndKey) {
  GgufBuilder b;
  b.String("tokenizer.ggml.model", "gpt2");
  b.Strings("tokenizer.ggml.tokens", {"a", "b"});
  b.Strings("tokenizer.ggml.merges", {"a b"});  // "ab" is not a token
  b.String("tokenizer.ggml.pre", "smollm");
  auto data = b.Build();
  auto file = ParseGgufBuffer(data.data(), data.size(), "bad.gguf");
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto spec = SpecFromGguf(**file);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  auto tok = BpeTokenizer::Create(std::move(spec).value());
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("bad.gguf"), std::string::npos);

  GgufBuilder c;
  c.String("tokenizer.ggml.model", "gpt2");
  c.Strings("tokenizer.ggml.tokens", {"a"});
  c.Strings("tokenizer.ggml.merges", {});
  c.String("tokenizer.ggml.pre", "mystery");
  data = c.Build();
  file = ParseGgufBuffer(data.data(), data.size(), "pre.gguf");
  ASSERT_TRUE(file.ok());
  spec = SpecFromGguf(**file);
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("mystery"), std::string::npos);
  EXPECT_NE(spec.status().message().find("pre.gguf"), std::string::npos);

  GgufBuilder d;
  d.String("tokenizer.ggml.model", "bert");
  d.Strings("tokenizer.ggml.tokens", {"a"});
  data = d.Build();
  file = ParseGgufBuffer(data.data(), data.size(), "bert.gguf");
  ASSERT_TRUE(file.ok());
  spec = SpecFromGguf(**file);
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("bert"), std::string::npos);
}

}  // namespace
}  // namespace ite

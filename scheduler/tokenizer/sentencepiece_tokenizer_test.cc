// The libsentencepiece path, on a small BPE model trained here (no tokenizer.model is in the
// test data). libsentencepiece itself is the reference for plain text.
#include "scheduler/tokenizer/sentencepiece_tokenizer.h"

#include <gtest/gtest.h>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <fstream>

namespace ite {
namespace {

std::string TrainModel() {
  const auto dir = std::filesystem::temp_directory_path() / "ite_sp_test";
  std::filesystem::create_directories(dir);
  const auto corpus = dir / "corpus.txt";
  {
    std::ofstream out(corpus);
    for (int i = 0; i < 200; ++i) {
      out << "hello world number " << i << " the quick brown fox jumps over the lazy dog\n";
      out << "tokenizers split text into pieces; caf\xC3\xA9 na\xC3\xAFve\n";
    }
  }
  const auto prefix = (dir / "tiny").string();
  const auto status = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + corpus.string() + " --model_prefix=" + prefix +
      " --vocab_size=400 --model_type=bpe --character_coverage=1.0 --byte_fallback=true"
      " --minloglevel=2");
  EXPECT_TRUE(status.ok()) << status.ToString();
  return prefix + ".model";
}

TEST(SentencePieceTokenizerTest, MatchesLibraryAndParsesControlTokens) {
  const std::string model = TrainModel();
  auto tok = Tokenizer::FromFile(model);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(model).ok());

  const std::string text = "hello brown fox, caf\xC3\xA9 \xF0\x9F\x98\x80 zebra";
  const std::vector<int> want = sp.EncodeAsIds(text);
  const std::vector<int32_t> got = (*tok)->Encode(text, false);
  EXPECT_EQ(std::vector<int>(got.begin(), got.end()), want);
  EXPECT_EQ((*tok)->Decode(got, false), text);

  const int32_t bos = (*tok)->bos_id();
  ASSERT_GE(bos, 0);
  EXPECT_EQ((*tok)->TokenToId("<s>"), bos);
  EXPECT_TRUE((*tok)->IsSpecial(bos));
  EXPECT_FALSE((*tok)->TokenToId("no-such-piece-here").has_value());
  ASSERT_EQ((*tok)->eos_ids().size(), 1u);

  // "<s>" in the text is the BOS token, not characters; with add_special_tokens BOS comes first.
  const auto ids = (*tok)->Encode("<s>hello", true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], bos);
  EXPECT_EQ(ids[1], bos);
  EXPECT_EQ((*tok)->Decode(ids, true), "hello");
  EXPECT_EQ((*tok)->Decode(ids, false), "<s><s>hello");
}

TEST(SentencePieceTokenizerTest, BadModelFileNamesTheFile) {
  const auto path = std::filesystem::temp_directory_path() / "ite_sp_bad.model";
  std::ofstream(path) << "definitely not a protobuf";
  auto tok = Tokenizer::FromFile(path.string());
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find(path.string()), std::string::npos);
}

}  // namespace
}  // namespace ite

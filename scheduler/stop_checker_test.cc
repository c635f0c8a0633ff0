#include "scheduler/stop_checker.h"

#include <gtest/gtest.h>

#include "scheduler/tokenizer/tokenizer.h"

namespace ite {
namespace {

// A tokenizer whose token i decodes to pieces[i] (bytes, possibly half a UTF-8 character).
class PieceTokenizer : public Tokenizer {
 public:
  explicit PieceTokenizer(std::vector<std::string> pieces) : pieces_(std::move(pieces)) {}
  std::vector<int32_t> Encode(std::string_view, bool) const override { return {}; }
  std::string Decode(std::span<const int32_t> ids, bool) const override {
    std::string bytes;
    for (int32_t id : ids) bytes += pieces_.at(id);
    // Lossy like the real tokenizers: an unfinished trailing character becomes U+FFFD.
    for (size_t back = 1; back <= 3 && back <= bytes.size(); ++back) {
      unsigned char c = static_cast<unsigned char>(bytes[bytes.size() - back]);
      if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
      size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      if (need > back) bytes.replace(bytes.size() - back, back, "\xEF\xBF\xBD");
      break;
    }
    return bytes;
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  int32_t bos_id() const override { return -1; }
  std::vector<int32_t> eos_ids() const override { return {}; }
  std::optional<int32_t> TokenToId(std::string_view) const override { return std::nullopt; }
  std::string IdToToken(int32_t id) const override { return pieces_.at(id); }
  bool IsSpecial(int32_t) const override { return false; }

 private:
  std::vector<std::string> pieces_;
};

// Token ids: 0 "Hello", 1 " wor", 2 "ld", 3 "\n", 4 "</", 5 "answer", 6 ">", 7 "x"
const std::vector<std::string> kPieces = {"Hello", " wor", "ld", "\n", "</", "answer", ">", "x"};

struct Row {
  int32_t token;
  std::string text;  // expected newly final text
  bool stopped;
};

void RunTable(const std::vector<std::string>& stops, const std::vector<Row>& rows,
              const std::string& flushed) {
  PieceTokenizer tok(kPieces);
  StopChecker checker(&tok, stops);
  for (size_t i = 0; i < rows.size(); ++i) {
    StopChecker::Result r = checker.Push(rows[i].token);
    EXPECT_EQ(r.text, rows[i].text) << "row " << i;
    EXPECT_EQ(r.stopped, rows[i].stopped) << "row " << i;
  }
  EXPECT_EQ(checker.Flush().text, flushed);
}

TEST(StopCheckerTest, NoStopStringsStreamsEverything) {
  RunTable({}, {{0, "Hello", false}, {1, " wor", false}, {2, "ld", false}}, "");
}

TEST(StopCheckerTest, StopStringAcrossThreeTokens) {
  RunTable({"</answer>"},
           {{0, "Hello", false},
            {4, "", false},  // "</" could start the stop string: held
            {5, "", false},  // "</answer" still could
            {6, "", true}},  // completed: nothing after "Hello" is emitted
           "");
}

TEST(StopCheckerTest, HeldTextIsReleasedWhenItStopsMatching) {
  RunTable({"</answer>"}, {{4, "", false}, {7, "</x", false}, {0, "Hello", false}}, "");
}

TEST(StopCheckerTest, DoubleNewlineFromTwoTokens) {
  RunTable({"\n\n"}, {{0, "Hello", false}, {3, "", false}, {3, "", true}}, "");
}

TEST(StopCheckerTest, TextBeforeTheStopInTheSameToken) {
  // " world\n" then "\n": the stop is found in the middle of the accumulated text.
  RunTable({"ld\n\n"}, {{1, " wor", false}, {2, "", false}, {3, "", false}, {3, "", true}}, "");
  // "Hello" ends in "o", which could start "or": held until " wor" completes the stop.
  RunTable({"or"}, {{0, "Hell", false}, {1, "o w", true}}, "");
}

TEST(StopCheckerTest, FlushReleasesHeldTextAtTheEnd) {
  RunTable({"</answer>"}, {{0, "Hello", false}, {4, "", false}}, "</");
}

TEST(StopCheckerTest, HalfUtf8CharacterIsNotEmitted) {
  // "é" is C3 A9, split over two tokens; the decoder holds the first byte.
  PieceTokenizer tok({"caf", "\xC3", "\xA9", "!"});
  StopChecker checker(&tok, {"!"});
  EXPECT_EQ(checker.Push(0).text, "caf");
  EXPECT_EQ(checker.Push(1).text, "");
  EXPECT_EQ(checker.Push(2).text, "\xC3\xA9");
  StopChecker::Result r = checker.Push(3);
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "");
}

TEST(StopCheckerTest, WithoutTokenizerNoText) {
  StopChecker checker(nullptr, {});
  EXPECT_EQ(checker.Push(5).text, "");
  EXPECT_FALSE(checker.Push(5).stopped);
  EXPECT_EQ(checker.Flush().text, "");
}

}  // namespace
}  // namespace ite

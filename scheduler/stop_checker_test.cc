#include "scheduler/stop_checker.h"

#include <gtest/gtest.h>

#include "scheduler/piece_tokenizer_testing.h"

namespace ite {
namespace {

// Token ids: 0 "Hello", 1 " wor", 2 "ld", 3 "\n", 4 "</", 5 "answer", 6 ">", 7 "x"
const std::vector<std::string> kPieces = {"Hello", " wor", "ld", "\n", "</", "answer", ">", "x"};

struct Row {
  int32_t token;
  std::string text;  // expected newly final text
  bool stopped;
};

void RunTable(const std::vector<std::string>& stops, const std::vector<Row>& rows,
              const std::string& flushed) {
  scheduler_testing::PieceTokenizer tok(kPieces);
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
  scheduler_testing::PieceTokenizer tok({"caf", "\xC3", "\xA9", "!"});
  StopChecker checker(&tok, {"!"});
  EXPECT_EQ(checker.Push(0).text, "caf");
  EXPECT_EQ(checker.Push(1).text, "");
  EXPECT_EQ(checker.Push(2).text, "\xC3\xA9");
  StopChecker::Result r = checker.Push(3);
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "");
}

TEST(StopCheckerTest, IncludeStopEndsTheTextWithIt) {
  scheduler_testing::PieceTokenizer tok(kPieces);
  StopChecker checker(&tok, {"</answer>"}, /*include_stop=*/true);
  EXPECT_EQ(checker.Push(0).text, "Hello");
  EXPECT_EQ(checker.Push(4).text, "");  // "</" held: it may start the stop string
  EXPECT_EQ(checker.Push(5).text, "");
  StopChecker::Result r = checker.Push(6);
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "</answer>");
  EXPECT_EQ(checker.Push(7).text, "");  // nothing after a stop
}

TEST(StopCheckerTest, PushNoStopLetsAStopStringThroughAndStillHoldsPrefixes) {
  scheduler_testing::PieceTokenizer tok(kPieces);
  StopChecker checker(&tok, {"\n"});
  StopChecker::Result r = checker.PushNoStop(3);  // before min_tokens: "\n" is plain text
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(r.text, "\n");
  r = checker.Push(3);  // from min_tokens on it stops
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "");

  StopChecker prefix(&tok, {"</answer>"});
  EXPECT_EQ(prefix.PushNoStop(4).text, "");  // "</" is still held back
  r = prefix.Push(5);
  EXPECT_EQ(r.text, "");
  r = prefix.Push(6);  // the stop completes once stopping is allowed
  EXPECT_TRUE(r.stopped);
}

TEST(StopCheckerTest, WithoutTokenizerNoText) {
  StopChecker checker(nullptr, {});
  EXPECT_EQ(checker.Push(5).text, "");
  EXPECT_FALSE(checker.Push(5).stopped);
  EXPECT_EQ(checker.Flush().text, "");
}

}  // namespace
}  // namespace ite

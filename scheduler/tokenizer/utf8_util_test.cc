#include "scheduler/tokenizer/utf8_util.h"

#include <gtest/gtest.h>

namespace ite {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8Test, ValidTextIsUnchanged) {
  const std::string s = "a\xC3\xA9\xE6\x97\xA5\xF0\x9F\x98\x80";  // a é 日 😀
  EXPECT_TRUE(utf8::IsValid(s));
  EXPECT_EQ(utf8::Sanitize(s), s);
}

// Each row: input bytes, expected output. One U+FFFD per maximal invalid subsequence, as Rust's
// String::from_utf8_lossy and Python's bytes.decode("utf-8", "replace") do.
TEST(Utf8Test, SanitizeReplacesMaximalInvalidSubsequences) {
  const std::pair<std::string, std::string> cases[] = {
      {"\xFF", kFffd},
      {"a\x80z", "a" + kFffd + "z"},
      {"\xE2\x82", kFffd},  // truncated 3-byte char: one replacement
      {"\xE2\x82z", kFffd + "z"},
      {"\xF0\x9F\x98", kFffd},                              // truncated 4-byte char
      {"\xED\xA0\x80", kFffd + kFffd + kFffd},              // surrogate: each byte invalid
      {"\xC0\xAF", kFffd + kFffd},                          // overlong
      {"\xF4\x90\x80\x80", kFffd + kFffd + kFffd + kFffd},  // > U+10FFFF
      {"\xE2\x82\xAC\xE2", "\xE2\x82\xAC" + kFffd},
  };
  for (const auto& [in, want] : cases) {
    EXPECT_FALSE(utf8::IsValid(in));
    EXPECT_EQ(utf8::Sanitize(in), want) << "input bytes: " << in.size();
  }
}

TEST(Utf8Test, EndsWithIncompleteChar) {
  EXPECT_FALSE(utf8::EndsWithIncompleteChar(""));
  EXPECT_FALSE(utf8::EndsWithIncompleteChar("abc"));
  EXPECT_FALSE(utf8::EndsWithIncompleteChar("\xF0\x9F\x98\x80"));
  EXPECT_TRUE(utf8::EndsWithIncompleteChar("a\xF0"));
  EXPECT_TRUE(utf8::EndsWithIncompleteChar("a\xF0\x9F"));
  EXPECT_TRUE(utf8::EndsWithIncompleteChar("a\xF0\x9F\x98"));
  EXPECT_FALSE(utf8::EndsWithIncompleteChar("a\xFF"));  // invalid, not incomplete
}

TEST(Utf8Test, AppendAndNextRoundTrip) {
  for (char32_t cp : {U'\0', U'A', U'\u00E9', U'\u65E5', U'\U0001F600', U'\U0010FFFF'}) {
    std::string s;
    utf8::Append(s, cp);
    size_t pos = 0;
    EXPECT_EQ(utf8::Next(s, pos), cp);
    EXPECT_EQ(pos, s.size());
  }
}

}  // namespace
}  // namespace ite

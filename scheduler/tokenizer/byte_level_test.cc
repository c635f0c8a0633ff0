#include "scheduler/tokenizer/byte_level.h"

#include <gtest/gtest.h>

#include <set>

namespace ite {
namespace {

TEST(ByteLevelMapTest, KnownMappings) {
  const ByteLevelMap& m = ByteLevelMap::Get();
  EXPECT_EQ(m.Encode(' '), "\xC4\xA0");   // U+0120 'Ġ'
  EXPECT_EQ(m.Encode('\n'), "\xC4\x8A");  // U+010A 'Ċ'
  EXPECT_EQ(m.Encode('\t'), "\xC4\x89");  // U+0109 'ĉ'
  EXPECT_EQ(m.Encode(0), "\xC4\x80");     // U+0100 'Ā'
  EXPECT_EQ(m.Encode('!'), "!");
  EXPECT_EQ(m.Encode('~'), "~");
  EXPECT_EQ(m.Encode(0xAD), "\xC5\x83");  // soft hyphen is not printable: U+0143 'Ń'
  EXPECT_EQ(m.Encode(0xE9), "\xC3\xA9");  // 'é' maps to itself
}

TEST(ByteLevelMapTest, AllBytesRoundTripAndAreDistinct) {
  const ByteLevelMap& m = ByteLevelMap::Get();
  std::set<std::string> seen;
  std::string all;
  for (int b = 0; b < 256; ++b) {
    seen.insert(m.Encode(static_cast<uint8_t>(b)));
    all.push_back(static_cast<char>(b));
  }
  EXPECT_EQ(seen.size(), 256u);
  const auto back = m.DecodeAll(m.EncodeAll(all));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, all);
}

TEST(ByteLevelMapTest, CharactersOutsideTheMapAreRejected) {
  EXPECT_FALSE(ByteLevelMap::Get().DecodeAll("\xE6\x97\xA5").has_value());  // '日'
  EXPECT_FALSE(ByteLevelMap::Get().Decode(U' ').has_value());  // space itself is remapped
}

}  // namespace
}  // namespace ite

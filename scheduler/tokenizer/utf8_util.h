// Small UTF-8 helpers shared by the tokenizer pieces.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ite::utf8 {

inline constexpr char32_t kReplacement = 0xFFFD;

// Length of the valid UTF-8 character at text[pos], or 0 if the bytes there are not one
// (overlong forms, surrogates and values past U+10FFFF are invalid, as in Rust's from_utf8).
size_t ValidCharLength(std::string_view text, size_t pos);

// Length of the maximal prefix at text[pos] that could start a valid character but is not one
// (>= 1). Used to replace each such run by a single U+FFFD, as Rust's from_utf8_lossy does.
size_t InvalidRunLength(std::string_view text, size_t pos);

bool IsValid(std::string_view text);

// Copy of `text` with every maximal invalid subsequence replaced by U+FFFD.
std::string Sanitize(std::string_view text);

// Decodes the (valid) character at text[pos]; advances pos.
char32_t Next(std::string_view text, size_t& pos);

void Append(std::string& out, char32_t cp);

// True if `text` ends in the middle of a (so far valid) multi-byte character.
bool EndsWithIncompleteChar(std::string_view text);

}  // namespace ite::utf8

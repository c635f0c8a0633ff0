#include "scheduler/tokenizer/added_vocabulary.h"

#include <utf8proc.h>

#include <algorithm>

#include "scheduler/tokenizer/utf8_util.h"

namespace ite {
namespace {

// Rust's char::is_whitespace is the Unicode White_Space property.
bool IsWhitespace(char32_t c) {
  if (c == ' ' || (c >= 0x09 && c <= 0x0D) || c == 0x85 || c == 0xA0 || c == 0x1680) return true;
  if (c >= 0x2000 && c <= 0x200A) return true;
  return c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Rust's char::is_alphanumeric (Alphabetic or Numeric), approximated by the L and N categories.
bool IsWordChar(char32_t c) {
  if (c == '_') return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

// Last character of text[0, end) (valid UTF-8), and where it starts.
char32_t LastChar(std::string_view text, size_t end, size_t* start) {
  size_t s = end;
  do {
    --s;
  } while (s > 0 && (static_cast<uint8_t>(text[s]) & 0xC0) == 0x80);
  *start = s;
  size_t p = s;
  return utf8::Next(text, p);
}

}  // namespace

AddedVocabulary::AddedVocabulary(const std::vector<AddedTokenSpec>& tokens) : tokens_(tokens) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    if (tokens_[i].content.empty()) continue;
    Insert(tries_[tokens_[i].normalized ? 1 : 0], static_cast<int32_t>(i));
  }
}

void AddedVocabulary::Insert(Trie& trie, int32_t index) {
  if (trie.nodes.empty()) trie.nodes.emplace_back();
  const std::string& s = tokens_[index].content;
  trie.first_byte[static_cast<uint8_t>(s[0])] = true;
  int32_t node = 0;
  for (char c : s) {
    const auto b = static_cast<uint8_t>(c);
    const auto it = trie.nodes[node].next.find(b);
    if (it != trie.nodes[node].next.end()) {
      node = it->second;
    } else {
      const auto child = static_cast<int32_t>(trie.nodes.size());
      trie.nodes[node].next.emplace(b, child);
      trie.nodes.emplace_back();
      node = child;
    }
  }
  // A later duplicate of the same content replaces the earlier one, as HF's map does.
  trie.nodes[node].token = index;
}

std::pair<int32_t, size_t> AddedVocabulary::LongestAt(const Trie& trie, std::string_view text,
                                                      size_t pos) const {
  std::pair<int32_t, size_t> best{-1, 0};
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto it = trie.nodes[node].next.find(static_cast<uint8_t>(text[i]));
    if (it == trie.nodes[node].next.end()) break;
    node = it->second;
    if (trie.nodes[node].token >= 0) best = {trie.nodes[node].token, i + 1 - pos};
  }
  return best;
}

std::vector<AddedVocabulary::Segment> AddedVocabulary::Split(std::string_view text,
                                                             bool normalized) const {
  const Trie& trie = tries_[normalized ? 1 : 0];
  std::vector<Segment> out;
  size_t covered = 0;  // text[0, covered) is already in `out`
  size_t search = 0;   // where the next match may start (matches never overlap)
  while (!trie.nodes.empty() && search < text.size()) {
    size_t start = search;
    std::pair<int32_t, size_t> hit{-1, 0};
    for (; start < text.size(); ++start) {
      if (!trie.first_byte[static_cast<uint8_t>(text[start])]) continue;
      hit = LongestAt(trie, text, start);
      if (hit.first >= 0) break;
    }
    if (hit.first < 0) break;
    size_t stop = start + hit.second;
    search = stop;
    const AddedTokenSpec& tok = tokens_[hit.first];
    if (tok.single_word) {
      size_t s = 0;
      const bool start_ok = start == 0 || !IsWordChar(LastChar(text, start, &s));
      size_t p = stop;
      const bool stop_ok = stop == text.size() || !IsWordChar(utf8::Next(text, p));
      if (!start_ok || !stop_ok) continue;
    }
    if (tok.lstrip) {
      size_t new_start = start;
      while (new_start > 0) {
        size_t s = 0;
        if (!IsWhitespace(LastChar(text, new_start, &s))) break;
        new_start = s;
      }
      // Spaces an earlier match already took stay with it.
      start = std::max(new_start, covered);
    }
    if (tok.rstrip) {
      while (stop < text.size()) {
        size_t p = stop;
        if (!IsWhitespace(utf8::Next(text, p))) break;
        stop = p;
      }
    }
    if (covered < start) out.push_back({-1, covered, start});
    out.push_back({tok.id, start, stop});
    covered = stop;
  }
  if (covered < text.size()) out.push_back({-1, covered, text.size()});
  return out;
}

}  // namespace ite

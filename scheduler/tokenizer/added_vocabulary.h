// Added tokens (special or not) found in the input before normalization, as HF tokenizers'
// AddedVocabulary does: leftmost-longest matching, with the lstrip / rstrip / single_word flags.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "scheduler/tokenizer/tokenizer_spec.h"

namespace ite {

class AddedVocabulary {
 public:
  explicit AddedVocabulary(const std::vector<AddedTokenSpec>& tokens);

  struct Segment {
    int32_t id;  // the added token, or -1 for plain text between tokens
    size_t begin;
    size_t end;
  };
  // Covers `text` with segments. `normalized`: use the tokens matched on normalized text
  // (normalized=true) instead of those matched on the raw input.
  std::vector<Segment> Split(std::string_view text, bool normalized) const;

  bool has_normalized_tokens() const { return !tries_[1].nodes.empty(); }

 private:
  struct Trie {
    struct Node {
      std::unordered_map<uint8_t, int32_t> next;
      int32_t token = -1;  // index into tokens_ ending here
    };
    std::vector<Node> nodes;  // nodes[0] is the root when not empty
    std::array<bool, 256> first_byte{};
  };
  void Insert(Trie& trie, int32_t index);
  // Longest token starting at text[pos]: its index into tokens_ and length, or index -1.
  std::pair<int32_t, size_t> LongestAt(const Trie& trie, std::string_view text, size_t pos) const;

  std::vector<AddedTokenSpec> tokens_;
  Trie tries_[2];  // [0]: raw-input tokens, [1]: normalized tokens
};

}  // namespace ite

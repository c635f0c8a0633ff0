// The BPE model: a word (already in the vocabulary's alphabet, e.g. byte-level characters or
// "▁"-joined SentencePiece text) becomes ids by applying merges lowest rank first, leftmost
// first, exactly as HF tokenizers' BPE::merge_word. Unknown characters fall back to <0xXX> byte
// tokens or the unk token. Results for words are cached; Tokenize is thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "scheduler/tokenizer/tokenizer_spec.h"

namespace ite {

// Hash for string maps looked up by string_view without building a std::string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // Fails with a message naming `source` when a merge or the unk token is not in the vocab.
  static StatusOr<std::unique_ptr<BpeModel>> Create(const BpeModelSpec& spec,
                                                    std::string_view source);

  void Tokenize(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // nullptr when `id` is not in the vocab.
  const std::string* IdToToken(int32_t id) const;
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void MergeWord(std::string_view word, std::vector<int32_t>& out) const;

  BpeModelSpec options_;  // flags and prefixes; vocab/merges moved into the maps below
  StringMap<int32_t> token_to_id_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_ids_;  // <0xXX> token ids for byte fallback, -1 if missing
  int32_t unk_id_ = -1;

  // Words seen before. Bounded: cleared when full (HF caps its cache the same way).
  static constexpr size_t kCacheCapacity = 1 << 16;
  static constexpr size_t kMaxCachedWordBytes = 256;
  mutable std::mutex cache_mu_;
  mutable StringMap<std::vector<int32_t>> cache_;
};

}  // namespace ite

#include "scheduler/tokenizer/bpe_model.h"

#include <fmt/format.h>

#include <queue>

#include "scheduler/tokenizer/utf8_util.h"

namespace ite {

StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(const BpeModelSpec& spec,
                                                     std::string_view source) {
  auto m = std::unique_ptr<BpeModel>(new BpeModel());
  m->options_.unk_token = spec.unk_token;
  m->options_.byte_fallback = spec.byte_fallback;
  m->options_.fuse_unk = spec.fuse_unk;
  m->options_.ignore_merges = spec.ignore_merges;
  m->options_.continuing_subword_prefix = spec.continuing_subword_prefix;
  m->options_.end_of_word_suffix = spec.end_of_word_suffix;

  int32_t max_id = -1;
  for (const auto& [token, id] : spec.vocab) {
    if (id < 0) return InvalidArgument("{}: negative id {} for token '{}'", source, id, token);
    max_id = std::max(max_id, id);
  }
  m->token_to_id_.reserve(spec.vocab.size());
  m->id_to_token_.resize(static_cast<size_t>(max_id + 1));
  m->has_id_.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [token, id] : spec.vocab) {
    m->token_to_id_[token] = id;
    m->id_to_token_[id] = token;
    m->has_id_[id] = true;
  }

  const size_t prefix_len = spec.continuing_subword_prefix.size();
  m->merges_.reserve(spec.merges.size());
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const auto& [a, b] = spec.merges[rank];
    const auto ia = m->TokenToId(a);
    const auto ib = m->TokenToId(b);
    if (!ia || !ib) {
      return InvalidArgument("{}: merge {} ('{}' '{}') uses a token that is not in the vocab",
                             source, rank, a, b);
    }
    std::string merged = a;
    merged.append(b.size() >= prefix_len &&
                          b.compare(0, prefix_len, spec.continuing_subword_prefix) == 0
                      ? std::string_view(b).substr(prefix_len)
                      : std::string_view(b));
    const auto inew = m->TokenToId(merged);
    if (!inew) {
      return InvalidArgument("{}: merge {} ('{}' '{}') makes '{}', which is not in the vocab",
                             source, rank, a, b, merged);
    }
    // HF builds its merge map by inserting in rank order, so a repeated pair keeps the later rank.
    m->merges_[PairKey(*ia, *ib)] = Merge{static_cast<int32_t>(rank), *inew};
  }

  for (int b = 0; b < 256; ++b) {
    const auto id = m->TokenToId(fmt::format("<0x{:02X}>", b));
    m->byte_ids_[b] = id ? *id : -1;
  }
  if (!spec.unk_token.empty()) {
    const auto id = m->TokenToId(spec.unk_token);
    if (!id)
      return InvalidArgument("{}: unk_token '{}' is not in the vocab", source, spec.unk_token);
    m->unk_id_ = *id;
  }
  return m;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  const auto it = token_to_id_.find(token);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (const auto id = TokenToId(word)) {
      out.push_back(*id);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    const auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  MergeWord(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();
    cache_.emplace(std::string(word), std::move(ids));
  }
}

void BpeModel::MergeWord(std::string_view word, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&](int32_t id) {
    const auto n = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, n - 1, -1, true});
    if (n > 0) symbols[n - 1].next = n;
  };

  // Initial symbols: one per character (with the subword prefix / word suffix where configured).
  int32_t pending_unk = -1;  // fuse_unk: an unk not yet emitted
  std::string key;
  for (size_t pos = 0; pos < word.size();) {
    const size_t start = pos;
    utf8::Next(word, pos);
    const std::string_view ch = word.substr(start, pos - start);
    key.clear();
    if (start > 0) key += options_.continuing_subword_prefix;
    key.append(ch);
    if (pos == word.size()) key += options_.end_of_word_suffix;
    if (const auto id = TokenToId(key)) {
      if (pending_unk >= 0) {
        add(pending_unk);
        pending_unk = -1;
      }
      add(*id);
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (char c : key) all = all && byte_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all) {
        for (char c : key) add(byte_ids_[static_cast<uint8_t>(c)]);
        continue;
      }
    }
    if (unk_id_ >= 0) {
      if (pending_unk >= 0 && !options_.fuse_unk) add(pending_unk);
      pending_unk = unk_id_;
    }
    // Without an unk token HF drops the character; so do we.
  }
  if (pending_unk >= 0) add(pending_unk);

  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto consider = [&](int32_t left) {
    if (left < 0 || symbols[left].next < 0) return;
    const auto it = merges_.find(PairKey(symbols[left].id, symbols[symbols[left].next].id));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    // The pair may have changed since it was queued: merge only if it still makes new_id.
    const auto it = merges_.find(PairKey(left.id, symbols[left.next].id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    Symbol& right = symbols[left.next];
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    consider(left.prev);
    consider(top.pos);
  }
  for (const Symbol& s : symbols) {
    if (s.alive) out.push_back(s.id);
  }
}

}  // namespace ite

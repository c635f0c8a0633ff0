#include "scheduler/tokenizer/bpe_tokenizer.h"

#include <algorithm>

#include "scheduler/tokenizer/utf8_util.h"

namespace ite {

StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::Create(BpeTokenizerSpec spec) {
  auto t = std::unique_ptr<BpeTokenizer>(new BpeTokenizer());
  ITE_ASSIGN_OR_RETURN(t->model_, BpeModel::Create(spec.model, spec.source));
  ITE_ASSIGN_OR_RETURN(t->normalizer_, Normalizer::Create(spec.normalizer, spec.source));
  ITE_ASSIGN_OR_RETURN(t->pre_tokenizer_, PreTokenizer::Create(spec.pre_tokenizer, spec.source));
  t->decoder_ = std::make_unique<TokenDecoder>(spec.decoder, spec.has_decoder);
  int32_t max_id = t->model_->max_id();
  for (const AddedTokenSpec& a : spec.added_tokens) {
    if (a.id < 0)
      return InvalidArgument("{}: added token '{}' has a negative id", spec.source, a.content);
    if (a.content.empty()) {
      return InvalidArgument("{}: added token {} has empty content", spec.source, a.id);
    }
    max_id = std::max(max_id, a.id);
    t->added_id_to_token_[a.id] = a.content;
    t->added_token_to_id_[a.content] = a.id;
    if (a.special) t->special_ids_.insert(a.id);
  }
  t->added_ = std::make_unique<AddedVocabulary>(spec.added_tokens);
  t->vocab_size_ = max_id + 1;
  for (int32_t id : spec.post_prefix) {
    if (id < 0 || id > max_id)
      return InvalidArgument("{}: post-processor id {} out of range", spec.source, id);
  }
  for (int32_t id : spec.post_suffix) {
    if (id < 0 || id > max_id)
      return InvalidArgument("{}: post-processor id {} out of range", spec.source, id);
  }
  t->post_prefix_ = std::move(spec.post_prefix);
  t->post_suffix_ = std::move(spec.post_suffix);
  t->bos_id_ = spec.bos_id;
  t->eos_ids_ = std::move(spec.eos_ids);
  return t;
}

void BpeTokenizer::SetPostProcessing(std::vector<int32_t> prefix, std::vector<int32_t> suffix) {
  post_prefix_ = std::move(prefix);
  post_suffix_ = std::move(suffix);
}

void BpeTokenizer::SetBosEos(int32_t bos_id, std::vector<int32_t> eos_ids) {
  bos_id_ = bos_id;
  eos_ids_ = std::move(eos_ids);
}

void BpeTokenizer::EncodeText(std::string_view text, bool at_input_start,
                              std::vector<int32_t>& out) const {
  const std::string normalized = normalizer_->Apply(text);
  std::vector<std::string> words;
  if (added_->has_normalized_tokens()) {
    for (const auto& seg : added_->Split(normalized, /*normalized=*/true)) {
      if (seg.id >= 0) {
        // Flush the words before this token so the order is kept.
        for (const std::string& w : words) model_->Tokenize(w, out);
        words.clear();
        out.push_back(seg.id);
      } else {
        pre_tokenizer_->Split(std::string_view(normalized).substr(seg.begin, seg.end - seg.begin),
                              at_input_start && seg.begin == 0, words);
      }
    }
  } else {
    pre_tokenizer_->Split(normalized, at_input_start, words);
  }
  for (const std::string& w : words) model_->Tokenize(w, out);
}

std::vector<int32_t> BpeTokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  std::string sanitized;
  if (!utf8::IsValid(text)) {
    sanitized = utf8::Sanitize(text);
    text = sanitized;
  }
  std::vector<int32_t> out;
  if (add_special_tokens) out = post_prefix_;
  for (const auto& seg : added_->Split(text, /*normalized=*/false)) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
    } else {
      EncodeText(text.substr(seg.begin, seg.end - seg.begin), seg.begin == 0, out);
    }
  }
  if (add_special_tokens) out.insert(out.end(), post_suffix_.begin(), post_suffix_.end());
  return out;
}

std::string BpeTokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (skip_special_tokens && IsSpecial(id)) continue;
    const auto it = added_id_to_token_.find(id);
    if (it != added_id_to_token_.end()) {
      tokens.push_back(it->second);
    } else if (const std::string* t = model_->IdToToken(id)) {
      tokens.push_back(*t);
    }
    // Ids outside the vocabulary are skipped, as HF does.
  }
  return decoder_->Decode(std::move(tokens));
}

std::optional<int32_t> BpeTokenizer::TokenToId(std::string_view token) const {
  const auto it = added_token_to_id_.find(std::string(token));
  if (it != added_token_to_id_.end()) return it->second;
  return model_->TokenToId(token);
}

std::string BpeTokenizer::IdToToken(int32_t id) const {
  const auto it = added_id_to_token_.find(id);
  if (it != added_id_to_token_.end()) return it->second;
  const std::string* t = model_->IdToToken(id);
  return t ? *t : std::string();
}

}  // namespace ite

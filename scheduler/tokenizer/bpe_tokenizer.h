// Tokenizer for byte-level BPE (Llama 3, Qwen 2/2.5/3, GPT-2 style GGUF vocabularies) and
// SentencePiece-style BPE with byte fallback (Llama 2), built from a BpeTokenizerSpec.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "scheduler/tokenizer/added_vocabulary.h"
#include "scheduler/tokenizer/bpe_model.h"
#include "scheduler/tokenizer/normalizer.h"
#include "scheduler/tokenizer/pre_tokenizer.h"
#include "scheduler/tokenizer/token_decoder.h"
#include "scheduler/tokenizer/tokenizer.h"
#include "scheduler/tokenizer/tokenizer_spec.h"

namespace ite {

class BpeTokenizer final : public Tokenizer {
 public:
  static StatusOr<std::unique_ptr<BpeTokenizer>> Create(BpeTokenizerSpec spec);

  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const override;
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  int32_t bos_id() const override { return bos_id_; }
  std::vector<int32_t> eos_ids() const override { return eos_ids_; }
  std::optional<int32_t> TokenToId(std::string_view token) const override;
  std::string IdToToken(int32_t id) const override;
  bool IsSpecial(int32_t id) const override { return special_ids_.count(id) != 0; }

  // Replace the single-sequence post-processing (tokenizer_config.json's add_bos_token etc.).
  void SetPostProcessing(std::vector<int32_t> prefix, std::vector<int32_t> suffix);
  void SetBosEos(int32_t bos_id, std::vector<int32_t> eos_ids);

 private:
  BpeTokenizer() = default;
  void EncodeText(std::string_view text, bool at_input_start, std::vector<int32_t>& out) const;

  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<AddedVocabulary> added_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<TokenDecoder> decoder_;
  std::unordered_map<int32_t, std::string> added_id_to_token_;
  std::unordered_map<std::string, int32_t> added_token_to_id_;
  std::unordered_set<int32_t> special_ids_;
  std::vector<int32_t> post_prefix_;
  std::vector<int32_t> post_suffix_;
  int32_t vocab_size_ = 0;
  int32_t bos_id_ = -1;
  std::vector<int32_t> eos_ids_;
};

}  // namespace ite

#include "scheduler/tokenizer/gguf_vocab.h"

#include <algorithm>
#include <numeric>
#include <unordered_map>

#include "scheduler/tokenizer/pre_tokenizer.h"

namespace ite {
namespace {

// llama.cpp's token types.
constexpr int64_t kTypeNormal = 1;
constexpr int64_t kTypeUnknown = 2;
constexpr int64_t kTypeControl = 3;
constexpr int64_t kTypeUserDefined = 4;

// The split regexes of the HF tokenizer.json files these GGUF pre-tokenizer names come from.
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3})"
    R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N})"
    R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

DecoderStep Decoder(DecoderStep::Kind kind, std::string pattern = "", std::string content = "") {
  DecoderStep d;
  d.kind = kind;
  d.pattern = std::move(pattern);
  d.content = std::move(content);
  return d;
}

NormalizerStep Normalize(NormalizerStep::Kind kind, std::string pattern = "",
                         std::string content = "") {
  NormalizerStep n;
  n.kind = kind;
  n.pattern = std::move(pattern);
  n.content = std::move(content);
  return n;
}

PreTokenizerStep SplitStep(const char* pattern) {
  PreTokenizerStep s;
  s.kind = PreTokenizerStep::Kind::kSplit;
  s.pattern = pattern;
  s.behavior = SplitBehavior::kIsolated;
  return s;
}

PreTokenizerStep ByteLevelStep(bool use_regex) {
  PreTokenizerStep s;
  s.kind = PreTokenizerStep::Kind::kByteLevel;
  s.add_prefix_space = false;
  s.use_regex = use_regex;
  return s;
}

template <typename T>
StatusOr<T> Optional(const GgufFile& f, std::string_view key, T fallback,
                     StatusOr<T> (GgufFile::*get)(std::string_view) const) {
  if (f.Find(key) == nullptr) return fallback;
  return (f.*get)(key);
}

// HF's SentencePiece converter: every way to cut a piece into two vocab pieces is a merge;
// merges are ordered by the piece's score (highest first), ties by piece id then part ids.
std::vector<std::pair<std::string, std::string>> MergesFromScores(
    const std::vector<std::string>& tokens, const std::vector<double>& scores,
    const std::vector<int64_t>& types) {
  std::unordered_map<std::string_view, int32_t> ids;
  for (size_t i = 0; i < tokens.size(); ++i) ids.emplace(tokens[i], static_cast<int32_t>(i));
  struct Cand {
    double score;
    int32_t piece, left, right;
    size_t cut;
  };
  std::vector<Cand> cands;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!types.empty() && types[i] != kTypeNormal) continue;
    const std::string& t = tokens[i];
    std::vector<Cand> local;
    for (size_t cut = 1; cut < t.size(); ++cut) {
      const auto l = ids.find(std::string_view(t).substr(0, cut));
      const auto r = ids.find(std::string_view(t).substr(cut));
      if (l == ids.end() || r == ids.end()) continue;
      local.push_back({scores[i], static_cast<int32_t>(i), l->second, r->second, cut});
    }
    std::sort(local.begin(), local.end(), [](const Cand& a, const Cand& b) {
      return a.left != b.left ? a.left < b.left : a.right < b.right;
    });
    cands.insert(cands.end(), local.begin(), local.end());
  }
  std::stable_sort(cands.begin(), cands.end(),
                   [](const Cand& a, const Cand& b) { return a.score > b.score; });
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(cands.size());
  for (const Cand& c : cands) {
    const std::string& t = tokens[c.piece];
    merges.emplace_back(t.substr(0, c.cut), t.substr(c.cut));
  }
  return merges;
}

}  // namespace

StatusOr<std::vector<PreTokenizerStep>> PreTokenizerForGgufPre(const std::string& pre,
                                                               const std::string& source) {
  if (pre.empty() || pre == "default" || pre == "gpt2" || pre == "gpt-2") {
    return std::vector<PreTokenizerStep>{ByteLevelStep(/*use_regex=*/true)};
  }
  if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe") {
    return std::vector<PreTokenizerStep>{SplitStep(kLlama3Pattern), ByteLevelStep(false)};
  }
  if (pre == "qwen2") {
    return std::vector<PreTokenizerStep>{SplitStep(kQwen2Pattern), ByteLevelStep(false)};
  }
  if (pre == "smollm" || pre == "starcoder" || pre == "refact") {
    // HF: Sequence[Digits(individual_digits), ByteLevel(use_regex)].
    PreTokenizerStep digits;
    digits.kind = PreTokenizerStep::Kind::kDigits;
    digits.individual_digits = true;
    return std::vector<PreTokenizerStep>{digits, ByteLevelStep(true)};
  }
  return Unimplemented(
      "{}: tokenizer.ggml.pre '{}' is not supported (known: default, gpt2, llama-bpe, llama3, "
      "qwen2, smollm, starcoder, refact)",
      source, pre);
}

StatusOr<BpeTokenizerSpec> SpecFromGguf(const GgufFile& f) {
  const std::string& source = f.path();
  BpeTokenizerSpec spec;
  spec.source = source;
  ITE_ASSIGN_OR_RETURN(const std::string model, f.GetString("tokenizer.ggml.model"));
  ITE_ASSIGN_OR_RETURN(std::vector<std::string> tokens, f.GetStringArray("tokenizer.ggml.tokens"));
  if (tokens.empty() || tokens.size() > static_cast<size_t>(INT32_MAX)) {
    return InvalidArgument("{}: tokenizer.ggml.tokens has {} entries", source, tokens.size());
  }
  std::vector<int64_t> types;
  if (f.Find("tokenizer.ggml.token_type") != nullptr) {
    ITE_ASSIGN_OR_RETURN(types, f.GetIntArray("tokenizer.ggml.token_type"));
    if (types.size() != tokens.size()) {
      return InvalidArgument("{}: tokenizer.ggml.token_type has {} entries, tokens has {}", source,
                             types.size(), tokens.size());
    }
  }
  const int32_t n = static_cast<int32_t>(tokens.size());
  auto id_key = [&](const char* key) -> StatusOr<int32_t> {
    if (f.Find(key) == nullptr) return -1;
    ITE_ASSIGN_OR_RETURN(const int64_t v, f.GetInt(key));
    if (v < 0 || v >= n)
      return InvalidArgument("{}: {} = {} is out of range [0, {})", source, key, v, n);
    return static_cast<int32_t>(v);
  };
  ITE_ASSIGN_OR_RETURN(const int32_t bos, id_key("tokenizer.ggml.bos_token_id"));
  ITE_ASSIGN_OR_RETURN(const int32_t eos, id_key("tokenizer.ggml.eos_token_id"));
  ITE_ASSIGN_OR_RETURN(const int32_t eot, id_key("tokenizer.ggml.eot_token_id"));
  ITE_ASSIGN_OR_RETURN(const int32_t eom, id_key("tokenizer.ggml.eom_token_id"));
  ITE_ASSIGN_OR_RETURN(const int32_t unk, id_key("tokenizer.ggml.unknown_token_id"));
  const bool spm = model == "llama";
  if (!spm && model != "gpt2") {
    return Unimplemented("{}: tokenizer.ggml.model '{}' is not supported (gpt2, llama)", source,
                         model);
  }
  ITE_ASSIGN_OR_RETURN(const bool add_bos,
                       Optional<bool>(f, "tokenizer.ggml.add_bos_token", spm, &GgufFile::GetBool));
  ITE_ASSIGN_OR_RETURN(const bool add_eos, Optional<bool>(f, "tokenizer.ggml.add_eos_token", false,
                                                          &GgufFile::GetBool));

  for (int32_t i = 0; i < n; ++i) {
    spec.model.vocab.emplace_back(tokens[i], i);
    const int64_t type = types.empty() ? kTypeNormal : types[i];
    // The unknown token is special too (HF's converted tokenizers and llama.cpp parse it).
    if ((type == kTypeControl || type == kTypeUserDefined || type == kTypeUnknown) &&
        !tokens[i].empty()) {
      AddedTokenSpec a;
      a.id = i;
      a.content = tokens[i];
      a.special = type != kTypeUserDefined;
      spec.added_tokens.push_back(std::move(a));
    }
  }

  if (spm) {
    ITE_ASSIGN_OR_RETURN(const std::vector<double> scores,
                         f.GetFloatArray("tokenizer.ggml.scores"));
    if (scores.size() != tokens.size()) {
      return InvalidArgument("{}: tokenizer.ggml.scores has {} entries, tokens has {}", source,
                             scores.size(), tokens.size());
    }
    spec.model.merges = MergesFromScores(tokens, scores, types);
    spec.model.byte_fallback = true;
    spec.model.fuse_unk = true;
    int32_t unk_id = unk;
    for (int32_t i = 0; unk_id < 0 && i < n && !types.empty(); ++i) {
      if (types[i] == kTypeUnknown) unk_id = i;
    }
    if (unk_id >= 0) spec.model.unk_token = tokens[unk_id];
    ITE_ASSIGN_OR_RETURN(
        const bool add_space_prefix,
        Optional<bool>(f, "tokenizer.ggml.add_space_prefix", true, &GgufFile::GetBool));
    if (add_space_prefix) {
      spec.normalizer.push_back(Normalize(NormalizerStep::Kind::kPrepend, "\u2581"));
    }
    spec.normalizer.push_back(Normalize(NormalizerStep::Kind::kReplace, " ", "\u2581"));
    spec.decoder.push_back(Decoder(DecoderStep::Kind::kReplace, "\u2581", " "));
    spec.decoder.push_back(Decoder(DecoderStep::Kind::kByteFallback));
    spec.decoder.push_back(Decoder(DecoderStep::Kind::kFuse));
    if (add_space_prefix) {
      DecoderStep strip = Decoder(DecoderStep::Kind::kStrip, "", " ");
      strip.start = 1;
      spec.decoder.push_back(strip);
    }
  } else {
    ITE_ASSIGN_OR_RETURN(const std::vector<std::string> merges,
                         f.GetStringArray("tokenizer.ggml.merges"));
    for (size_t i = 0; i < merges.size(); ++i) {
      const size_t space = merges[i].find(' ', 1);
      if (space == std::string::npos) {
        return InvalidArgument("{}: tokenizer.ggml.merges[{}] '{}' is not \"a b\"", source, i,
                               merges[i]);
      }
      spec.model.merges.emplace_back(merges[i].substr(0, space), merges[i].substr(space + 1));
    }
    std::string pre;
    if (f.Find("tokenizer.ggml.pre") != nullptr) {
      ITE_ASSIGN_OR_RETURN(pre, f.GetString("tokenizer.ggml.pre"));
    }
    ITE_ASSIGN_OR_RETURN(spec.pre_tokenizer, PreTokenizerForGgufPre(pre, source));
    // As llama.cpp and HF's Llama 3 tokenizer.json: whole words in the vocab skip the merges.
    spec.model.ignore_merges = pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe";
    if (pre == "qwen2") spec.normalizer.push_back(Normalize(NormalizerStep::Kind::kNfc));
    spec.decoder.push_back(Decoder(DecoderStep::Kind::kByteLevel));
  }

  spec.bos_id = bos;
  for (int32_t id : {eos, eot, eom}) {
    if (id >= 0 && std::find(spec.eos_ids.begin(), spec.eos_ids.end(), id) == spec.eos_ids.end()) {
      spec.eos_ids.push_back(id);
    }
  }
  if (add_bos && bos >= 0) spec.post_prefix.push_back(bos);
  if (add_eos && eos >= 0) spec.post_suffix.push_back(eos);
  return spec;
}

}  // namespace ite

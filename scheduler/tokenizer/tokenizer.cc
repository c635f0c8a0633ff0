#include "scheduler/tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/gguf_reader.h"
#include "scheduler/tokenizer/bpe_tokenizer.h"
#include "scheduler/tokenizer/gguf_vocab.h"
#include "scheduler/tokenizer/sentencepiece_tokenizer.h"
#include "scheduler/tokenizer/tokenizer_json.h"
#include "scheduler/tokenizer/utf8_util.h"

namespace ite {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("{}: cannot open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return DataLoss("{}: read error", path);
  return ss.str();
}

// Optional JSON file: null when absent; an error when present but not JSON.
StatusOr<json> ReadOptionalJson(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return json();
  ITE_ASSIGN_OR_RETURN(const std::string text, ReadFile(path.string()));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return InvalidArgument("{}: not a JSON object", path.string());
  }
  return j;
}

// tokenizer_config.json writes special tokens as "..." or {"content": "..."}.
std::optional<std::string> TokenContent(const json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return std::nullopt;
}

// What tokenizer_config.json / generation_config.json beside a tokenizer.json say.
struct HfConfig {
  std::optional<int32_t> bos_id;
  std::vector<int32_t> eos_ids;
  std::optional<bool> add_bos;
  std::optional<bool> add_eos;
};

StatusOr<HfConfig> ReadHfConfig(const fs::path& dir, const Tokenizer& tok) {
  HfConfig cfg;
  ITE_ASSIGN_OR_RETURN(const json config, ReadOptionalJson(dir / "tokenizer_config.json"));
  ITE_ASSIGN_OR_RETURN(const json gen, ReadOptionalJson(dir / "generation_config.json"));
  const std::string config_name = (dir / "tokenizer_config.json").string();
  auto lookup = [&](const std::string& token, const char* key) -> StatusOr<int32_t> {
    const auto id = tok.TokenToId(token);
    if (!id)
      return InvalidArgument("{}: {} '{}' is not in the vocabulary", config_name, key, token);
    return *id;
  };
  if (config.is_object()) {
    if (const auto bos = TokenContent(config, "bos_token")) {
      ITE_ASSIGN_OR_RETURN(cfg.bos_id, lookup(*bos, "bos_token"));
    }
    if (const auto eos = TokenContent(config, "eos_token")) {
      ITE_ASSIGN_OR_RETURN(const int32_t id, lookup(*eos, "eos_token"));
      cfg.eos_ids.push_back(id);
    }
    for (const char* key : {"add_bos_token", "add_eos_token"}) {
      const auto it = config.find(key);
      if (it == config.end() || it->is_null()) continue;
      if (!it->is_boolean()) return InvalidArgument("{}: {} is not a boolean", config_name, key);
      (std::string(key) == "add_bos_token" ? cfg.add_bos : cfg.add_eos) = it->get<bool>();
    }
  }
  if (gen.is_object()) {
    const auto it = gen.find("eos_token_id");
    const std::string gen_name = (dir / "generation_config.json").string();
    std::vector<json> ids;
    if (it != gen.end() && it->is_array()) ids.assign(it->begin(), it->end());
    if (it != gen.end() && it->is_number_integer()) ids.push_back(*it);
    for (const json& id : ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
          id.get<int64_t>() >= tok.vocab_size()) {
        return InvalidArgument("{}: eos_token_id {} is not a valid id", gen_name, id.dump());
      }
      const auto v = static_cast<int32_t>(id.get<int64_t>());
      if (std::find(cfg.eos_ids.begin(), cfg.eos_ids.end(), v) == cfg.eos_ids.end()) {
        cfg.eos_ids.push_back(v);
      }
    }
  }
  return cfg;
}

StatusOr<std::unique_ptr<BpeTokenizer>> LoadTokenizerJson(const std::string& path) {
  ITE_ASSIGN_OR_RETURN(const std::string text, ReadFile(path));
  ITE_ASSIGN_OR_RETURN(BpeTokenizerSpec spec, ParseTokenizerJson(text, path));
  return BpeTokenizer::Create(std::move(spec));
}

// A tokenizer.json plus the configs beside it. `folder_semantics`: the configs' add_bos_token /
// add_eos_token replace the post-processor (transformers does this when loading a folder).
StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const fs::path& json_path,
                                                     bool folder_semantics) {
  ITE_ASSIGN_OR_RETURN(std::unique_ptr<BpeTokenizer> tok, LoadTokenizerJson(json_path.string()));
  ITE_ASSIGN_OR_RETURN(const HfConfig cfg, ReadHfConfig(json_path.parent_path(), *tok));
  const int32_t bos = cfg.bos_id.value_or(tok->bos_id());
  std::vector<int32_t> eos = cfg.eos_ids.empty() ? tok->eos_ids() : cfg.eos_ids;
  tok->SetBosEos(bos, eos);
  if (folder_semantics && (cfg.add_bos || cfg.add_eos)) {
    std::vector<int32_t> prefix;
    std::vector<int32_t> suffix;
    if (cfg.add_bos.value_or(false) && bos >= 0) prefix.push_back(bos);
    if (cfg.add_eos.value_or(false) && !eos.empty()) suffix.push_back(eos.front());
    tok->SetPostProcessing(std::move(prefix), std::move(suffix));
  }
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

bool StartsWithGgufMagic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::string_view(magic, 4) == "GGUF";
}

}  // namespace

Tokenizer::~Tokenizer() = default;

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "tokenizer.json", ec)) return LoadHfTokenizer(p / "tokenizer.json", true);
    if (fs::exists(p / "tokenizer.model", ec)) {
      return CreateSentencePieceTokenizer((p / "tokenizer.model").string());
    }
    return NotFound("{}: folder has neither tokenizer.json nor tokenizer.model", path);
  }
  if (!fs::exists(p, ec)) return NotFound("{}: no such file", path);
  if (StartsWithGgufMagic(path)) {
    ITE_ASSIGN_OR_RETURN(const std::unique_ptr<GgufFile> gguf, GgufFile::Open(path));
    ITE_ASSIGN_OR_RETURN(BpeTokenizerSpec spec, SpecFromGguf(*gguf));
    ITE_ASSIGN_OR_RETURN(std::unique_ptr<BpeTokenizer> tok, BpeTokenizer::Create(std::move(spec)));
    return std::unique_ptr<Tokenizer>(std::move(tok));
  }
  if (p.extension() == ".json") return LoadHfTokenizer(p, /*folder_semantics=*/false);
  if (p.extension() == ".model") return CreateSentencePieceTokenizer(path);
  return InvalidArgument(
      "{}: unknown tokenizer format (expected tokenizer.json, tokenizer.model, .gguf or a folder)",
      path);
}

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tok, bool skip_special_tokens)
    : tok_(tok), skip_special_tokens_(skip_special_tokens) {}

std::string IncrementalDecoder::Push(int32_t id) {
  ids_.push_back(id);
  // Decode with the already-emitted ids as context, so SentencePiece's "strip the leading space
  // of the text" and byte-level characters split over tokens come out as in a full decode.
  std::string text = tok_.Decode(ids_, skip_special_tokens_);
  // A trailing U+FFFD may be a character whose remaining bytes are in the next ids: hold it.
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  static constexpr int kMaxHeld = 8;  // a character is at most 4 bytes, so 4 byte tokens
  if (text.size() >= kReplacement.size() &&
      text.compare(text.size() - kReplacement.size(), kReplacement.size(), kReplacement) == 0 &&
      held_ < kMaxHeld) {
    ++held_;
    return {};
  }
  held_ = 0;
  if (text.size() < prefix_text_.size() || text.compare(0, prefix_text_.size(), prefix_text_)) {
    // Decoding is not prefix-stable here (should not happen with the supported decoders): emit
    // nothing new rather than repeating or garbling text; Flush settles the rest.
    return {};
  }
  std::string delta = text.substr(prefix_text_.size());
  // Keep the shortest suffix of ids that decodes to some text as context for the next id: with
  // text in front, a decoder that strips the first leading space (SentencePiece) strips it from
  // the context, as a full decode would. If nothing decodes to text, the output so far is empty
  // and one id is enough.
  size_t keep = 1;
  std::string context = tok_.Decode(std::span(ids_).last(1), skip_special_tokens_);
  while (context.empty() && keep < ids_.size()) {
    ++keep;
    context = tok_.Decode(std::span(ids_).last(keep), skip_special_tokens_);
  }
  if (context.empty()) keep = 1;
  ids_.erase(ids_.begin(), ids_.end() - static_cast<std::ptrdiff_t>(keep));
  prefix_text_ = std::move(context);
  prefix_len_ = ids_.size();
  return delta;
}

std::string IncrementalDecoder::Flush() {
  std::string text = tok_.Decode(ids_, skip_special_tokens_);
  std::string delta;
  if (text.size() >= prefix_text_.size() &&
      text.compare(0, prefix_text_.size(), prefix_text_) == 0) {
    delta = text.substr(prefix_text_.size());
  } else {
    delta = std::move(text);
  }
  ids_.clear();
  prefix_text_.clear();
  prefix_len_ = 0;
  held_ = 0;
  return delta;
}

}  // namespace ite

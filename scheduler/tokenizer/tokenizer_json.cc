#include "scheduler/tokenizer/tokenizer_json.h"

#include <algorithm>
#include <unordered_map>

#include <nlohmann/json.hpp>

namespace ite {
namespace {

using nlohmann::json;

// Field accessors that turn a missing / mistyped value into a Status naming file and field.
class Reader {
 public:
  explicit Reader(const std::string& source) : source_(source) {}

  Status Error(std::string_view field, std::string_view what) const {
    return InvalidArgument("{}: {}: {}", source_, field, what);
  }
  Status Bool(const json& obj, const char* key, bool* out, std::string_view where) const {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return Status::Ok();  // keep the default
    if (!it->is_boolean()) return Error(fmt::format("{}.{}", where, key), "expected a boolean");
    *out = it->get<bool>();
    return Status::Ok();
  }
  Status String(const json& obj, const char* key, std::string* out, std::string_view where,
                bool required = false) const {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
      return required ? Error(fmt::format("{}.{}", where, key), "missing") : Status::Ok();
    }
    if (!it->is_string()) return Error(fmt::format("{}.{}", where, key), "expected a string");
    *out = it->get<std::string>();
    return Status::Ok();
  }
  Status Int(const json& obj, const char* key, int64_t* out, std::string_view where,
             bool required = false) const {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
      return required ? Error(fmt::format("{}.{}", where, key), "missing") : Status::Ok();
    }
    if (!it->is_number_integer()) {
      return Error(fmt::format("{}.{}", where, key), "expected an integer");
    }
    *out = it->get<int64_t>();
    return Status::Ok();
  }
  StatusOr<std::string> Type(const json& obj, std::string_view where) const {
    if (!obj.is_object()) return Error(where, "expected an object");
    std::string type;
    ITE_RETURN_IF_ERROR(String(obj, "type", &type, where, /*required=*/true));
    return type;
  }
  // {"String": "..."} or {"Regex": "..."}
  Status Pattern(const json& obj, std::string* pattern, bool* is_regex,
                 std::string_view where) const {
    const auto it = obj.find("pattern");
    const std::string field = fmt::format("{}.pattern", where);
    if (it == obj.end() || !it->is_object()) return Error(field, "expected {String|Regex: ...}");
    if (it->contains("Regex")) {
      *is_regex = true;
      return String(*it, "Regex", pattern, field, true);
    }
    *is_regex = false;
    return String(*it, "String", pattern, field, true);
  }
  // Ids index dense tables, so bound them well below INT32_MAX (real vocabularies are < 1M).
  static constexpr int64_t kMaxId = (int64_t{1} << 24) - 1;
  Status Id(int64_t v, std::string_view field) const {
    if (v < 0 || v > kMaxId) {
      return Error(field, fmt::format("id {} out of range [0, {}]", v, kMaxId));
    }
    return Status::Ok();
  }

 private:
  const std::string& source_;
};

// Sequences nest; real files use one level. The limit keeps hostile files from exhausting the
// stack.
constexpr int kMaxNesting = 16;

StatusOr<PrependScheme> ParsePrependScheme(const Reader& r, const json& obj,
                                           std::string_view where) {
  std::string scheme;
  ITE_RETURN_IF_ERROR(r.String(obj, "prepend_scheme", &scheme, where));
  if (scheme.empty()) {
    bool add_prefix_space = true;  // legacy field
    ITE_RETURN_IF_ERROR(r.Bool(obj, "add_prefix_space", &add_prefix_space, where));
    return add_prefix_space ? PrependScheme::kAlways : PrependScheme::kNever;
  }
  if (scheme == "always") return PrependScheme::kAlways;
  if (scheme == "first") return PrependScheme::kFirst;
  if (scheme == "never") return PrependScheme::kNever;
  return r.Error(fmt::format("{}.prepend_scheme", where), fmt::format("unknown '{}'", scheme));
}

Status ParseNormalizer(const Reader& r, const json& obj, std::string_view where,
                       std::vector<NormalizerStep>& out, int depth = 0) {
  if (obj.is_null()) return Status::Ok();
  if (depth > kMaxNesting) return r.Error(where, "Sequence nested too deeply");
  ITE_ASSIGN_OR_RETURN(const std::string type, r.Type(obj, where));
  NormalizerStep step;
  if (type == "Sequence") {
    const auto it = obj.find("normalizers");
    if (it == obj.end() || !it->is_array()) {
      return r.Error(fmt::format("{}.normalizers", where), "expected an array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      ITE_RETURN_IF_ERROR(ParseNormalizer(r, (*it)[i], fmt::format("{}.normalizers[{}]", where, i),
                                          out, depth + 1));
    }
    return Status::Ok();
  } else if (type == "NFC") {
    step.kind = NormalizerStep::Kind::kNfc;
  } else if (type == "NFD") {
    step.kind = NormalizerStep::Kind::kNfd;
  } else if (type == "NFKC") {
    step.kind = NormalizerStep::Kind::kNfkc;
  } else if (type == "NFKD") {
    step.kind = NormalizerStep::Kind::kNfkd;
  } else if (type == "Lowercase") {
    step.kind = NormalizerStep::Kind::kLowercase;
  } else if (type == "Prepend") {
    step.kind = NormalizerStep::Kind::kPrepend;
    ITE_RETURN_IF_ERROR(r.String(obj, "prepend", &step.pattern, where, true));
  } else if (type == "Replace") {
    step.kind = NormalizerStep::Kind::kReplace;
    ITE_RETURN_IF_ERROR(r.Pattern(obj, &step.pattern, &step.pattern_is_regex, where));
    ITE_RETURN_IF_ERROR(r.String(obj, "content", &step.content, where, true));
  } else {
    return Unimplemented("{}: normalizer type '{}' is not supported", where, type);
  }
  out.push_back(std::move(step));
  return Status::Ok();
}

StatusOr<SplitBehavior> ParseBehavior(const Reader& r, const std::string& s,
                                      std::string_view where) {
  if (s == "Removed") return SplitBehavior::kRemoved;
  if (s == "Isolated") return SplitBehavior::kIsolated;
  if (s == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (s == "Contiguous") return SplitBehavior::kContiguous;
  return r.Error(fmt::format("{}.behavior", where), fmt::format("unknown '{}'", s));
}

Status ParsePreTokenizer(const Reader& r, const json& obj, std::string_view where,
                         std::vector<PreTokenizerStep>& out, int depth = 0) {
  if (obj.is_null()) return Status::Ok();
  if (depth > kMaxNesting) return r.Error(where, "Sequence nested too deeply");
  ITE_ASSIGN_OR_RETURN(const std::string type, r.Type(obj, where));
  PreTokenizerStep step;
  if (type == "Sequence") {
    const auto it = obj.find("pretokenizers");
    if (it == obj.end() || !it->is_array()) {
      return r.Error(fmt::format("{}.pretokenizers", where), "expected an array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      ITE_RETURN_IF_ERROR(ParsePreTokenizer(
          r, (*it)[i], fmt::format("{}.pretokenizers[{}]", where, i), out, depth + 1));
    }
    return Status::Ok();
  } else if (type == "Split") {
    step.kind = PreTokenizerStep::Kind::kSplit;
    ITE_RETURN_IF_ERROR(r.Pattern(obj, &step.pattern, &step.pattern_is_regex, where));
    std::string behavior;
    ITE_RETURN_IF_ERROR(r.String(obj, "behavior", &behavior, where, true));
    ITE_ASSIGN_OR_RETURN(step.behavior, ParseBehavior(r, behavior, where));
    ITE_RETURN_IF_ERROR(r.Bool(obj, "invert", &step.invert, where));
  } else if (type == "ByteLevel") {
    step.kind = PreTokenizerStep::Kind::kByteLevel;
    step.add_prefix_space = true;  // HF's defaults
    step.use_regex = true;
    ITE_RETURN_IF_ERROR(r.Bool(obj, "add_prefix_space", &step.add_prefix_space, where));
    ITE_RETURN_IF_ERROR(r.Bool(obj, "use_regex", &step.use_regex, where));
  } else if (type == "Digits") {
    step.kind = PreTokenizerStep::Kind::kDigits;
    ITE_RETURN_IF_ERROR(r.Bool(obj, "individual_digits", &step.individual_digits, where));
  } else if (type == "Metaspace") {
    step.kind = PreTokenizerStep::Kind::kMetaspace;
    ITE_RETURN_IF_ERROR(r.String(obj, "replacement", &step.replacement, where));
    ITE_ASSIGN_OR_RETURN(step.prepend_scheme, ParsePrependScheme(r, obj, where));
    ITE_RETURN_IF_ERROR(r.Bool(obj, "split", &step.split, where));
  } else if (type == "WhitespaceSplit") {
    step.kind = PreTokenizerStep::Kind::kSplit;
    step.pattern = R"(\s+)";
    step.behavior = SplitBehavior::kRemoved;
  } else if (type == "Whitespace") {
    step.kind = PreTokenizerStep::Kind::kSplit;
    step.pattern = R"(\w+|[^\w\s]+)";
    step.behavior = SplitBehavior::kRemoved;
    step.invert = true;
  } else {
    return Unimplemented("{}: pre-tokenizer type '{}' is not supported", where, type);
  }
  out.push_back(std::move(step));
  return Status::Ok();
}

Status ParseDecoder(const Reader& r, const json& obj, std::string_view where,
                    std::vector<DecoderStep>& out, int depth = 0) {
  if (depth > kMaxNesting) return r.Error(where, "Sequence nested too deeply");
  ITE_ASSIGN_OR_RETURN(const std::string type, r.Type(obj, where));
  DecoderStep step;
  if (type == "Sequence") {
    const auto it = obj.find("decoders");
    if (it == obj.end() || !it->is_array()) {
      return r.Error(fmt::format("{}.decoders", where), "expected an array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      ITE_RETURN_IF_ERROR(
          ParseDecoder(r, (*it)[i], fmt::format("{}.decoders[{}]", where, i), out, depth + 1));
    }
    return Status::Ok();
  } else if (type == "ByteLevel") {
    step.kind = DecoderStep::Kind::kByteLevel;
  } else if (type == "Replace") {
    step.kind = DecoderStep::Kind::kReplace;
    bool is_regex = false;
    ITE_RETURN_IF_ERROR(r.Pattern(obj, &step.pattern, &is_regex, where));
    if (is_regex) return Unimplemented("{}: regex Replace decoder is not supported", where);
    ITE_RETURN_IF_ERROR(r.String(obj, "content", &step.content, where, true));
  } else if (type == "ByteFallback") {
    step.kind = DecoderStep::Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = DecoderStep::Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = DecoderStep::Kind::kStrip;
    ITE_RETURN_IF_ERROR(r.String(obj, "content", &step.content, where, true));
    int64_t start = 0;
    int64_t stop = 0;
    ITE_RETURN_IF_ERROR(r.Int(obj, "start", &start, where));
    ITE_RETURN_IF_ERROR(r.Int(obj, "stop", &stop, where));
    if (start < 0 || stop < 0 || start > 1024 || stop > 1024) {
      return r.Error(where, "Strip start/stop out of range");
    }
    step.start = static_cast<int>(start);
    step.stop = static_cast<int>(stop);
  } else if (type == "Metaspace") {
    step.kind = DecoderStep::Kind::kMetaspace;
    step.pattern = "\u2581";
    ITE_RETURN_IF_ERROR(r.String(obj, "replacement", &step.pattern, where));
    ITE_ASSIGN_OR_RETURN(step.prepend_scheme, ParsePrependScheme(r, obj, where));
  } else {
    return Unimplemented("{}: decoder type '{}' is not supported", where, type);
  }
  out.push_back(std::move(step));
  return Status::Ok();
}

// TemplateProcessing / RobertaProcessing / BertProcessing / ByteLevel / Sequence.
Status ParsePostProcessor(const Reader& r, const json& obj, std::string_view where,
                          BpeTokenizerSpec& spec, int depth = 0) {
  if (obj.is_null()) return Status::Ok();
  if (depth > kMaxNesting) return r.Error(where, "Sequence nested too deeply");
  ITE_ASSIGN_OR_RETURN(const std::string type, r.Type(obj, where));
  if (type == "ByteLevel") return Status::Ok();  // only trims offsets, which we do not return
  if (type == "Sequence") {
    const auto it = obj.find("processors");
    if (it == obj.end() || !it->is_array()) {
      return r.Error(fmt::format("{}.processors", where), "expected an array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      ITE_RETURN_IF_ERROR(ParsePostProcessor(
          r, (*it)[i], fmt::format("{}.processors[{}]", where, i), spec, depth + 1));
    }
    return Status::Ok();
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    for (const char* key : {"cls", "sep"}) {
      const auto it = obj.find(key);
      if (it == obj.end() || !it->is_array() || it->size() != 2 || !(*it)[1].is_number_integer()) {
        return r.Error(fmt::format("{}.{}", where, key), "expected [token, id]");
      }
      const int64_t id = (*it)[1].get<int64_t>();
      ITE_RETURN_IF_ERROR(r.Id(id, fmt::format("{}.{}", where, key)));
      (std::string(key) == "cls" ? spec.post_prefix : spec.post_suffix)
          .push_back(static_cast<int32_t>(id));
    }
    return Status::Ok();
  }
  if (type != "TemplateProcessing") {
    return Unimplemented("{}: post-processor type '{}' is not supported", where, type);
  }
  const auto single = obj.find("single");
  const auto specials = obj.find("special_tokens");
  if (single == obj.end() || !single->is_array()) {
    return r.Error(fmt::format("{}.single", where), "expected an array");
  }
  if (specials == obj.end() || !specials->is_object()) {
    return r.Error(fmt::format("{}.special_tokens", where), "expected an object");
  }
  bool seen_sequence = false;
  for (size_t i = 0; i < single->size(); ++i) {
    const json& item = (*single)[i];
    const std::string field = fmt::format("{}.single[{}]", where, i);
    if (!item.is_object()) return r.Error(field, "expected an object");
    if (item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    const auto st = item.find("SpecialToken");
    if (st == item.end() || !st->is_object()) {
      return r.Error(field, "expected SpecialToken or Sequence");
    }
    std::string name;
    ITE_RETURN_IF_ERROR(r.String(*st, "id", &name, field, true));
    const auto def = specials->find(name);
    if (def == specials->end() || !def->is_object() || !def->contains("ids") ||
        !(*def)["ids"].is_array()) {
      return r.Error(fmt::format("{}.special_tokens", where),
                     fmt::format("'{}' missing or without ids", name));
    }
    for (const json& id : (*def)["ids"]) {
      if (!id.is_number_integer()) return r.Error(field, "special token ids must be integers");
      ITE_RETURN_IF_ERROR(r.Id(id.get<int64_t>(), field));
      (seen_sequence ? spec.post_suffix : spec.post_prefix)
          .push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
  }
  return Status::Ok();
}

Status ParseModel(const Reader& r, const json& obj, BpeModelSpec& model) {
  if (!obj.is_object()) return r.Error("model", "expected an object");
  std::string type;
  ITE_RETURN_IF_ERROR(r.String(obj, "type", &type, "model"));
  if (!type.empty() && type != "BPE") {
    return Unimplemented("model.type '{}' is not supported (only BPE)", type);
  }
  const auto vocab = obj.find("vocab");
  if (vocab == obj.end() || !vocab->is_object())
    return r.Error("model.vocab", "expected an object");
  model.vocab.reserve(vocab->size());
  for (const auto& [token, id] : vocab->items()) {
    if (!id.is_number_integer()) {
      return r.Error("model.vocab", fmt::format("id of '{}' is not an integer", token));
    }
    ITE_RETURN_IF_ERROR(r.Id(id.get<int64_t>(), fmt::format("model.vocab['{}']", token)));
    model.vocab.emplace_back(token, static_cast<int32_t>(id.get<int64_t>()));
  }
  const auto merges = obj.find("merges");
  if (merges != obj.end() && !merges->is_null()) {
    if (!merges->is_array()) return r.Error("model.merges", "expected an array");
    model.merges.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
      const json& m = (*merges)[i];
      if (m.is_string()) {
        const std::string& s = m.get_ref<const std::string&>();
        const size_t space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
          return r.Error(fmt::format("model.merges[{}]", i), "expected \"a b\"");
        }
        model.merges.emplace_back(s.substr(0, space), s.substr(space + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        model.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        return r.Error(fmt::format("model.merges[{}]", i), "expected \"a b\" or [\"a\", \"b\"]");
      }
    }
  }
  const auto dropout = obj.find("dropout");
  if (dropout != obj.end() && !dropout->is_null()) {
    return Unimplemented("model.dropout is set; BPE dropout is not supported");
  }
  ITE_RETURN_IF_ERROR(r.String(obj, "unk_token", &model.unk_token, "model"));
  ITE_RETURN_IF_ERROR(r.Bool(obj, "byte_fallback", &model.byte_fallback, "model"));
  ITE_RETURN_IF_ERROR(r.Bool(obj, "fuse_unk", &model.fuse_unk, "model"));
  ITE_RETURN_IF_ERROR(r.Bool(obj, "ignore_merges", &model.ignore_merges, "model"));
  ITE_RETURN_IF_ERROR(
      r.String(obj, "continuing_subword_prefix", &model.continuing_subword_prefix, "model"));
  ITE_RETURN_IF_ERROR(r.String(obj, "end_of_word_suffix", &model.end_of_word_suffix, "model"));
  return Status::Ok();
}

Status ParseAddedTokens(const Reader& r, const json& root, BpeTokenizerSpec& spec) {
  const auto added = root.find("added_tokens");
  if (added == root.end() || added->is_null()) return Status::Ok();
  if (!added->is_array()) return r.Error("added_tokens", "expected an array");
  for (size_t i = 0; i < added->size(); ++i) {
    const json& a = (*added)[i];
    const std::string where = fmt::format("added_tokens[{}]", i);
    if (!a.is_object()) return r.Error(where, "expected an object");
    AddedTokenSpec t;
    int64_t id = -1;
    ITE_RETURN_IF_ERROR(r.Int(a, "id", &id, where, true));
    ITE_RETURN_IF_ERROR(r.Id(id, where));
    t.id = static_cast<int32_t>(id);
    ITE_RETURN_IF_ERROR(r.String(a, "content", &t.content, where, true));
    if (t.content.empty()) return r.Error(where, "empty content");
    t.normalized = true;  // HF's default when the field is absent
    ITE_RETURN_IF_ERROR(r.Bool(a, "special", &t.special, where));
    ITE_RETURN_IF_ERROR(r.Bool(a, "lstrip", &t.lstrip, where));
    ITE_RETURN_IF_ERROR(r.Bool(a, "rstrip", &t.rstrip, where));
    ITE_RETURN_IF_ERROR(r.Bool(a, "single_word", &t.single_word, where));
    ITE_RETURN_IF_ERROR(r.Bool(a, "normalized", &t.normalized, where));
    spec.added_tokens.push_back(std::move(t));
  }
  return Status::Ok();
}

// HF tokenizers does not trust the ids written in added_tokens: it re-adds the tokens in order,
// giving a token already in the vocab (or added before) that id and every other token the next
// id after the vocab and earlier added tokens. Real files agree with this; edited ones may not.
void AssignAddedTokenIds(BpeTokenizerSpec& spec) {
  std::unordered_map<std::string, int32_t> known;
  known.reserve(spec.model.vocab.size() + spec.added_tokens.size());
  for (const auto& [token, id] : spec.model.vocab) known.emplace(token, id);
  const auto vocab_count = static_cast<int32_t>(spec.model.vocab.size());
  int32_t max_added = -1;
  for (AddedTokenSpec& t : spec.added_tokens) {
    const auto it = known.find(t.content);
    if (it != known.end()) {
      t.id = it->second;
    } else {
      t.id = max_added < 0 ? vocab_count
                           : (max_added >= vocab_count || vocab_count == 0 ? max_added + 1
                                                                           : vocab_count);
      known.emplace(t.content, t.id);
    }
    max_added = std::max(max_added, t.id);
  }
}

StatusOr<BpeTokenizerSpec> Parse(const json& root, const std::string& source) {
  const Reader r(source);
  if (!root.is_object()) return r.Error("(root)", "expected a JSON object");
  BpeTokenizerSpec spec;
  spec.source = source;
  const auto model = root.find("model");
  if (model == root.end()) return r.Error("model", "missing");
  static const json kNull;
  auto field = [&](const char* key) -> const json& {
    const auto it = root.find(key);
    return it == root.end() ? kNull : *it;
  };
  Status s = ParseModel(r, *model, spec.model);
  if (s.ok()) s = ParseAddedTokens(r, root, spec);
  if (s.ok()) AssignAddedTokenIds(spec);
  if (s.ok()) s = ParseNormalizer(r, field("normalizer"), "normalizer", spec.normalizer);
  if (s.ok()) s = ParsePreTokenizer(r, field("pre_tokenizer"), "pre_tokenizer", spec.pre_tokenizer);
  if (s.ok()) s = ParsePostProcessor(r, field("post_processor"), "post_processor", spec);
  if (s.ok() && !field("decoder").is_null()) {
    s = ParseDecoder(r, field("decoder"), "decoder", spec.decoder);
  }
  spec.has_decoder = !field("decoder").is_null();
  if (!s.ok()) {
    // Unimplemented errors are built without the file name; add it here.
    if (s.message().compare(0, source.size(), source) == 0) return s;
    return Status(s.code(), fmt::format("{}: {}", source, s.message()));
  }
  if (!spec.post_prefix.empty()) spec.bos_id = spec.post_prefix.front();
  if (!spec.post_suffix.empty()) spec.eos_ids = {spec.post_suffix.back()};
  return spec;
}

}  // namespace

StatusOr<BpeTokenizerSpec> ParseTokenizerJson(std::string_view text, const std::string& source) {
  json root = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return InvalidArgument("{}: not valid JSON", source);
  try {
    return Parse(root, source);
  } catch (const json::exception& e) {
    // The accessors above check types first; this only guards against a case they miss.
    return InvalidArgument("{}: malformed tokenizer.json: {}", source, e.what());
  }
}

}  // namespace ite

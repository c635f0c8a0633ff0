#include "scheduler/tokenizer/pre_tokenizer.h"

#include <algorithm>

#include "scheduler/tokenizer/byte_level.h"

namespace ite {
namespace {

std::string EscapeForRegex(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    const auto u = static_cast<unsigned char>(c);
    const bool plain = u >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                       (c >= 'A' && c <= 'Z') || c == '_';
    if (!plain) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

std::string ReplaceAll(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::string_view::npos;
       pos = hit + from.size()) {
    out.append(text.substr(pos, hit - pos));
    out.append(to);
  }
  out.append(text.substr(pos));
  return out;
}

}  // namespace

const char* PreTokenizer::kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::vector<std::string_view> SplitByMatches(std::string_view text, const Regex& re,
                                             SplitBehavior behavior, bool invert) {
  // Cover the text with (range, is_delimiter) parts, then combine them per behavior.
  struct Part {
    size_t begin, end;
    bool delim;
  };
  std::vector<Part> parts;
  size_t last = 0;
  for (const auto& [b, e] : re.FindAll(text)) {
    if (b > last) parts.push_back({last, b, invert});
    parts.push_back({b, e, !invert});
    last = e;
  }
  if (last < text.size()) parts.push_back({last, text.size(), invert});

  std::vector<Part> out;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Part& p : parts) {
        if (!p.delim) out.push_back(p);
      }
      break;
    case SplitBehavior::kIsolated:
      out = parts;
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_delim = false;
      for (const Part& p : parts) {
        if (p.delim && !previous_delim && !out.empty()) {
          out.back().end = p.end;
        } else {
          out.push_back(p);
        }
        previous_delim = p.delim;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool next_delim = false;
      for (size_t i = parts.size(); i-- > 0;) {
        const Part& p = parts[i];
        if (p.delim && !next_delim && !out.empty()) {
          out.back().begin = p.begin;
        } else {
          out.push_back(p);
        }
        next_delim = p.delim;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool previous_delim = false;
      for (size_t i = 0; i < parts.size(); ++i) {
        const Part& p = parts[i];
        if (i > 0 && p.delim == previous_delim) {
          out.back().end = p.end;
        } else {
          out.push_back(p);
        }
        previous_delim = p.delim;
      }
      break;
    }
  }
  std::vector<std::string_view> views;
  views.reserve(out.size());
  for (const Part& p : out) {
    if (p.end > p.begin) views.push_back(text.substr(p.begin, p.end - p.begin));
  }
  return views;
}

StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::Create(std::vector<PreTokenizerStep> steps,
                                                             std::string_view source) {
  auto pt = std::make_unique<PreTokenizer>();
  for (const PreTokenizerStep& step : steps) {
    std::string pattern;
    switch (step.kind) {
      case PreTokenizerStep::Kind::kSplit:
        pattern = step.pattern_is_regex ? step.pattern : EscapeForRegex(step.pattern);
        break;
      case PreTokenizerStep::Kind::kByteLevel:
        if (step.use_regex) pattern = kGpt2Pattern;
        break;
      case PreTokenizerStep::Kind::kDigits:
        pattern = step.individual_digits ? R"(\p{N})" : R"(\p{N}+)";
        break;
      case PreTokenizerStep::Kind::kMetaspace:
        pattern = EscapeForRegex(step.replacement);
        break;
    }
    std::unique_ptr<Regex> re;
    if (!pattern.empty()) {
      ITE_ASSIGN_OR_RETURN(re, Regex::Compile(pattern, source));
    }
    pt->regexes_.push_back(std::move(re));
  }
  pt->steps_ = std::move(steps);
  return pt;
}

void PreTokenizer::ApplyStep(size_t index, std::vector<Piece>& pieces) const {
  const PreTokenizerStep& step = steps_[index];
  const Regex* re = regexes_[index].get();
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (Piece& piece : pieces) {
    std::string text = std::move(piece.text);
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    switch (step.kind) {
      case PreTokenizerStep::Kind::kSplit:
        behavior = step.behavior;
        invert = step.invert;
        break;
      case PreTokenizerStep::Kind::kByteLevel:
        if (step.add_prefix_space && (text.empty() || text[0] != ' ')) text.insert(0, " ");
        break;
      case PreTokenizerStep::Kind::kDigits:
        behavior = SplitBehavior::kIsolated;
        break;
      case PreTokenizerStep::Kind::kMetaspace: {
        text = ReplaceAll(text, " ", step.replacement);
        const bool starts = text.compare(0, step.replacement.size(), step.replacement) == 0;
        const bool prepend =
            !starts && (step.prepend_scheme == PrependScheme::kAlways ||
                        (step.prepend_scheme == PrependScheme::kFirst && piece.at_input_start));
        if (prepend) text.insert(0, step.replacement);
        behavior = SplitBehavior::kMergedWithNext;
        if (!step.split) re = nullptr;
        break;
      }
    }
    std::vector<std::string> parts;
    if (re != nullptr) {
      for (std::string_view v : SplitByMatches(text, *re, behavior, invert)) parts.emplace_back(v);
    } else if (!text.empty()) {
      parts.push_back(std::move(text));
    }
    for (size_t i = 0; i < parts.size(); ++i) {
      std::string part = std::move(parts[i]);
      if (step.kind == PreTokenizerStep::Kind::kByteLevel) {
        part = ByteLevelMap::Get().EncodeAll(part);
      }
      out.push_back({std::move(part), piece.at_input_start && i == 0});
    }
  }
  pieces = std::move(out);
}

void PreTokenizer::Split(std::string_view text, bool at_input_start,
                         std::vector<std::string>& words) const {
  if (text.empty()) return;
  std::vector<Piece> pieces;
  pieces.push_back({std::string(text), at_input_start});
  for (size_t i = 0; i < steps_.size(); ++i) ApplyStep(i, pieces);
  for (Piece& p : pieces) {
    if (!p.text.empty()) words.push_back(std::move(p.text));
  }
}

}  // namespace ite

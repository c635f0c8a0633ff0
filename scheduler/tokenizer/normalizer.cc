#include "scheduler/tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>

#include "scheduler/tokenizer/utf8_util.h"

namespace ite {
namespace {

std::string NormalForm(std::string_view text, NormalizerStep::Kind kind) {
  int options = UTF8PROC_STABLE;
  switch (kind) {
    case NormalizerStep::Kind::kNfc:
      options |= UTF8PROC_COMPOSE;
      break;
    case NormalizerStep::Kind::kNfd:
      options |= UTF8PROC_DECOMPOSE;
      break;
    case NormalizerStep::Kind::kNfkc:
      options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
      break;
    case NormalizerStep::Kind::kNfkd:
      options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
      break;
    default:
      return std::string(text);
  }
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                          static_cast<utf8proc_ssize_t>(text.size()), &out,
                                          static_cast<utf8proc_option_t>(options));
  // The input is valid UTF-8, so utf8proc only fails on allocation; keep the text unchanged then.
  if (n < 0) return std::string(text);
  std::string result(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
  std::free(out);
  return result;
}

std::string Lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const char32_t cp = utf8::Next(text, pos);
    utf8::Append(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
  }
  return out;
}

std::string ReplaceAll(std::string_view text, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(text);
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(text.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(text.substr(pos));
  return out;
}

}  // namespace

StatusOr<std::unique_ptr<Normalizer>> Normalizer::Create(std::vector<NormalizerStep> steps,
                                                         std::string_view source) {
  auto n = std::make_unique<Normalizer>();
  for (const NormalizerStep& step : steps) {
    std::unique_ptr<Regex> re;
    if (step.kind == NormalizerStep::Kind::kReplace && step.pattern_is_regex) {
      ITE_ASSIGN_OR_RETURN(re, Regex::Compile(step.pattern, source));
    }
    n->regexes_.push_back(std::move(re));
  }
  n->steps_ = std::move(steps);
  return n;
}

std::string Normalizer::Apply(std::string_view text) const {
  std::string s(text);
  for (size_t i = 0; i < steps_.size(); ++i) {
    const NormalizerStep& step = steps_[i];
    switch (step.kind) {
      case NormalizerStep::Kind::kNfc:
      case NormalizerStep::Kind::kNfd:
      case NormalizerStep::Kind::kNfkc:
      case NormalizerStep::Kind::kNfkd:
        s = NormalForm(s, step.kind);
        break;
      case NormalizerStep::Kind::kLowercase:
        s = Lowercase(s);
        break;
      case NormalizerStep::Kind::kPrepend:
        if (!s.empty()) s.insert(0, step.pattern);
        break;
      case NormalizerStep::Kind::kReplace:
        if (regexes_[i] == nullptr) {
          s = ReplaceAll(s, step.pattern, step.content);
        } else {
          std::string out;
          size_t last = 0;
          for (const auto& [b, e] : regexes_[i]->FindAll(s)) {
            out.append(s, last, b - last);
            out.append(step.content);
            last = e;
          }
          out.append(s, last);
          s = std::move(out);
        }
        break;
    }
  }
  return s;
}

}  // namespace ite

#include "scheduler/tokenizer/token_decoder.h"

#include <optional>

#include "scheduler/tokenizer/byte_level.h"
#include "scheduler/tokenizer/utf8_util.h"

namespace ite {
namespace {

std::string ReplaceAll(const std::string& text, const std::string& from, const std::string& to) {
  if (from.empty()) return text;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(text, pos, hit - pos);
    out.append(to);
  }
  out.append(text, pos);
  return out;
}

std::optional<uint8_t> ParseByteToken(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return std::nullopt;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int hi = hex(t[3]);
  const int lo = hex(t[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<uint8_t>(hi * 16 + lo);
}

std::vector<std::string> ByteLevelStep(std::vector<std::string>& tokens) {
  const ByteLevelMap& map = ByteLevelMap::Get();
  std::string bytes;
  for (const std::string& t : tokens) {
    const auto decoded = map.DecodeAll(t);
    bytes += decoded ? *decoded : t;
  }
  return {utf8::Sanitize(bytes)};
}

std::vector<std::string> ByteFallbackStep(std::vector<std::string>& tokens) {
  std::vector<std::string> out;
  std::string pending;
  auto flush = [&] {
    if (pending.empty()) return;
    if (utf8::IsValid(pending)) {
      out.push_back(pending);
    } else {
      // HF emits one U+FFFD per byte of an invalid run.
      for (size_t i = 0; i < pending.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
    }
    pending.clear();
  };
  for (std::string& t : tokens) {
    if (const auto b = ParseByteToken(t)) {
      pending.push_back(static_cast<char>(*b));
    } else {
      flush();
      out.push_back(std::move(t));
    }
  }
  flush();
  return out;
}

std::string StripChars(const std::string& t, const std::string& ch, int start, int stop) {
  size_t b = 0;
  size_t e = t.size();
  for (int i = 0; i < start && !ch.empty() && t.compare(b, ch.size(), ch) == 0 && b < e; ++i) {
    b += ch.size();
  }
  for (int i = 0; i < stop && !ch.empty() && e >= b + ch.size() &&
                  t.compare(e - ch.size(), ch.size(), ch) == 0;
       ++i) {
    e -= ch.size();
  }
  return t.substr(b, e - b);
}

}  // namespace

std::string TokenDecoder::Decode(std::vector<std::string> tokens) const {
  if (!has_decoder_) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out += ' ';
      out += tokens[i];
    }
    return utf8::Sanitize(out);
  }
  for (const DecoderStep& step : steps_) {
    switch (step.kind) {
      case DecoderStep::Kind::kByteLevel:
        tokens = ByteLevelStep(tokens);
        break;
      case DecoderStep::Kind::kReplace:
        for (std::string& t : tokens) t = ReplaceAll(t, step.pattern, step.content);
        break;
      case DecoderStep::Kind::kByteFallback:
        tokens = ByteFallbackStep(tokens);
        break;
      case DecoderStep::Kind::kFuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens = {std::move(all)};
        break;
      }
      case DecoderStep::Kind::kStrip:
        for (std::string& t : tokens) t = StripChars(t, step.content, step.start, step.stop);
        break;
      case DecoderStep::Kind::kMetaspace:
        // As HF: in the first token every replacement character is dropped (not only the
        // leading one); elsewhere each becomes a space.
        for (size_t i = 0; i < tokens.size(); ++i) {
          const bool drop = i == 0 && step.prepend_scheme != PrependScheme::kNever;
          tokens[i] = ReplaceAll(tokens[i], step.pattern, drop ? "" : " ");
        }
        break;
    }
  }
  std::string out;
  for (const std::string& t : tokens) out += t;
  return utf8::Sanitize(out);
}

}  // namespace ite

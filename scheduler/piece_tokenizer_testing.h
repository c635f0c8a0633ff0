// Test support: a tokenizer whose token i decodes to pieces[i] (bytes, possibly half a UTF-8
// character), so tests can spell out exactly what text each token adds.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "scheduler/tokenizer/tokenizer.h"

namespace ite::scheduler_testing {

class PieceTokenizer : public Tokenizer {
 public:
  explicit PieceTokenizer(std::vector<std::string> pieces) : pieces_(std::move(pieces)) {}
  std::vector<int32_t> Encode(std::string_view, bool) const override { return {}; }
  std::string Decode(std::span<const int32_t> ids, bool) const override {
    std::string bytes;
    for (int32_t id : ids) bytes += pieces_.at(id);
    // Lossy like the real tokenizers: an unfinished trailing character becomes U+FFFD.
    for (size_t back = 1; back <= 3 && back <= bytes.size(); ++back) {
      unsigned char c = static_cast<unsigned char>(bytes[bytes.size() - back]);
      if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
      size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      if (need > back) bytes.replace(bytes.size() - back, back, "\xEF\xBF\xBD");
      break;
    }
    return bytes;
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  int32_t bos_id() const override { return -1; }
  std::vector<int32_t> eos_ids() const override { return {}; }
  std::optional<int32_t> TokenToId(std::string_view) const override { return std::nullopt; }
  std::string IdToToken(int32_t id) const override { return pieces_.at(id); }
  bool IsSpecial(int32_t) const override { return false; }

 private:
  std::vector<std::string> pieces_;
};

}  // namespace ite::scheduler_testing

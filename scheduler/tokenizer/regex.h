// A compiled PCRE2 pattern in UTF + UCP mode (so \p{L}, \s, \w follow Unicode), JIT-compiled
// when the platform allows. Patterns come from tokenizer.json (written for Oniguruma / Rust
// fancy-regex); the constructs they use (\p{..}, (?i:..), (?!\S), {1,3}) mean the same in PCRE2.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace ite {

class Regex {
 public:
  // `source` names the file/field for error messages.
  static StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern,
                                                  std::string_view source);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping matches [begin, end) left to right in valid UTF-8 `text`. An empty match
  // advances by one character so the scan always ends.
  std::vector<std::pair<size_t, size_t>> FindAll(std::string_view text) const;

 private:
  explicit Regex(void* code) : code_(code) {}
  void* code_;  // pcre2_code_8*
};

}  // namespace ite

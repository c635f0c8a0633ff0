// Applies tokenizer.json's normalizer steps (Unicode normal forms through utf8proc, lowercase,
// Prepend, Replace) to one piece of input text.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "scheduler/tokenizer/regex.h"
#include "scheduler/tokenizer/tokenizer_spec.h"

namespace ite {

class Normalizer {
 public:
  static StatusOr<std::unique_ptr<Normalizer>> Create(std::vector<NormalizerStep> steps,
                                                      std::string_view source);
  bool empty() const { return steps_.empty(); }
  // `text` must be valid UTF-8; so is the result.
  std::string Apply(std::string_view text) const;

 private:
  std::vector<NormalizerStep> steps_;
  std::vector<std::unique_ptr<Regex>> regexes_;  // per step; null unless a regex Replace
};

}  // namespace ite

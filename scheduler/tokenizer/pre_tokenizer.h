// Splits normalized text into words for the BPE model, following tokenizer.json's pre-tokenizer
// (Split with a regex or string, ByteLevel, Digits, Metaspace, or a Sequence of them).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "scheduler/tokenizer/regex.h"
#include "scheduler/tokenizer/tokenizer_spec.h"

namespace ite {

class PreTokenizer {
 public:
  static StatusOr<std::unique_ptr<PreTokenizer>> Create(std::vector<PreTokenizerStep> steps,
                                                        std::string_view source);

  // Words of `text` (valid UTF-8) in order, appended to `words`. `at_input_start`: the text
  // begins at offset 0 of the user's input (Metaspace's "first" prepend scheme needs it).
  void Split(std::string_view text, bool at_input_start, std::vector<std::string>& words) const;

  // The GPT-2 split regex ByteLevel uses when use_regex is set.
  static const char* kGpt2Pattern;

 private:
  struct Piece {
    std::string text;
    bool at_input_start;
  };
  void ApplyStep(size_t index, std::vector<Piece>& pieces) const;

  std::vector<PreTokenizerStep> steps_;
  std::vector<std::unique_ptr<Regex>> regexes_;  // per step; null where none is needed
};

// Splits `text` by the matches of `re` (or the inverse) as HF's NormalizedString::split does.
std::vector<std::string_view> SplitByMatches(std::string_view text, const Regex& re,
                                             SplitBehavior behavior, bool invert);

}  // namespace ite

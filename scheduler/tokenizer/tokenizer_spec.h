// Plain description of a BPE tokenizer pipeline (normalizer -> pre-tokenizer -> BPE model ->
// post-processor, and the decoder), filled from tokenizer.json (tokenizer_json.h) or from a GGUF
// vocabulary (gguf_vocab.h) and turned into a working BpeTokenizer.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ite {

struct AddedTokenSpec {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false;       // swallow whitespace on the left when matched
  bool rstrip = false;       // swallow whitespace on the right when matched
  bool single_word = false;  // match only when not inside a word
  bool normalized = false;   // matched on normalized text (else on the raw input)
};

struct NormalizerStep {
  enum class Kind { kNfc, kNfd, kNfkc, kNfkd, kLowercase, kPrepend, kReplace };
  Kind kind = Kind::kNfc;
  std::string pattern;  // kReplace: what to find; kPrepend: what to put in front
  bool pattern_is_regex = false;
  std::string content;  // kReplace: replacement
};

// HF's SplitDelimiterBehavior: what happens to the pieces a pattern matches.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
enum class PrependScheme { kAlways, kFirst, kNever };

struct PreTokenizerStep {
  enum class Kind { kSplit, kByteLevel, kDigits, kMetaspace };
  Kind kind = Kind::kSplit;
  // kSplit
  std::string pattern;
  bool pattern_is_regex = true;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  // kByteLevel
  bool add_prefix_space = false;
  bool use_regex = true;
  // kDigits
  bool individual_digits = false;
  // kMetaspace
  std::string replacement = "\u2581";
  PrependScheme prepend_scheme = PrependScheme::kAlways;
  bool split = true;
};

struct DecoderStep {
  enum class Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace };
  Kind kind = Kind::kByteLevel;
  std::string pattern;  // kReplace: what to find (a plain string); kMetaspace: replacement char
  std::string content;  // kReplace: replacement; kStrip: the character stripped
  int start = 0;        // kStrip: how many leading `content` characters to remove per token
  int stop = 0;         // kStrip: how many trailing ones
  PrependScheme prepend_scheme = PrependScheme::kAlways;  // kMetaspace
};

struct BpeModelSpec {
  // (token, id) pairs; ids need not be dense.
  std::vector<std::pair<std::string, int32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;  // by rank (first = applied first)
  std::string unk_token;                                    // "" = none
  bool byte_fallback = false;  // unknown characters become <0xXX> byte tokens
  bool fuse_unk = false;       // consecutive unknowns become one unk token
  bool ignore_merges = false;  // a word that is itself in the vocab is one token
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
};

struct BpeTokenizerSpec {
  std::string source;  // file the spec came from, for error messages
  BpeModelSpec model;
  std::vector<AddedTokenSpec> added_tokens;
  std::vector<NormalizerStep> normalizer;
  std::vector<PreTokenizerStep> pre_tokenizer;
  // Single-sequence post-processing: ids put before / after the text when add_special_tokens.
  std::vector<int32_t> post_prefix;
  std::vector<int32_t> post_suffix;
  bool has_decoder = true;  // without one, HF joins tokens with spaces
  std::vector<DecoderStep> decoder;
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
};

}  // namespace ite

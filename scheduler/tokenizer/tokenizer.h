// Text <-> token ids for every model format the service loads.
//
// Implementations: byte-level and SentencePiece-style BPE read from tokenizer.json or a GGUF
// vocabulary (BpeTokenizer), and tokenizer.model through libsentencepiece. Encode/Decode are const
// and safe to call from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ite {

class Tokenizer {
 public:
  // `path` is a tokenizer.json, a tokenizer.model (SentencePiece), a .gguf, or a HF model folder
  // (tokenizer.json + tokenizer_config.json + generation_config.json when present).
  static StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);

  virtual ~Tokenizer();

  // Special/added tokens written in `text` are parsed as such (HF `encode` semantics).
  // add_special_tokens: BOS/EOS as the tokenizer's post-processor / config would add them.
  // Invalid UTF-8 in `text` is replaced by U+FFFD (one per maximal invalid subsequence) first.
  virtual std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const = 0;
  // Bytes that do not form valid UTF-8 come out as U+FFFD (like HF's from_utf8_lossy).
  virtual std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;                // -1 if none
  virtual std::vector<int32_t> eos_ids() const = 0;  // may be empty
  virtual std::optional<int32_t> TokenToId(std::string_view token) const = 0;
  virtual std::string IdToToken(int32_t id) const = 0;  // raw vocab string; "" if out of range
  virtual bool IsSpecial(int32_t id) const = 0;
};

// Streams text for ids one at a time, never emitting half a UTF-8 character and handling
// SentencePiece leading-space rules like a full Decode of the prefix would: the concatenation of
// every Push() and the final Flush() equals tok.Decode(all ids). A trailing U+FFFD is held back
// (it may be the first bytes of a character), but at most 8 pushes in a row, so a model emitting
// invalid bytes still streams; only then can the stream differ from the full decode. Not
// thread-safe (one per stream).
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tok, bool skip_special_tokens = true);
  std::string Push(int32_t id);  // text that became final with this id (maybe "")
  std::string Flush();           // whatever is left (invalid bytes as U+FFFD)

 private:
  const Tokenizer& tok_;
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;  // ids since the last context token
  size_t prefix_len_ = 0;     // ids_[0, prefix_len_) were emitted already (context for the rest)
  std::string prefix_text_;   // Decode(ids_[0, prefix_len_))
  int held_ = 0;              // pushes in a row held back for a trailing U+FFFD
};

}  // namespace ite

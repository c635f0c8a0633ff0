// Turns vocab strings back into text with tokenizer.json's decoder chain (ByteLevel, Replace,
// ByteFallback, Fuse, Strip, Metaspace), step for step as HF tokenizers' decode_chain.
#pragma once

#include <string>
#include <vector>

#include "scheduler/tokenizer/tokenizer_spec.h"

namespace ite {

class TokenDecoder {
 public:
  // has_decoder=false: HF joins the raw tokens with spaces.
  TokenDecoder(std::vector<DecoderStep> steps, bool has_decoder)
      : steps_(std::move(steps)), has_decoder_(has_decoder) {}

  // Result is valid UTF-8 (bytes that are not become U+FFFD).
  std::string Decode(std::vector<std::string> tokens) const;

 private:
  std::vector<DecoderStep> steps_;
  bool has_decoder_;
};

}  // namespace ite

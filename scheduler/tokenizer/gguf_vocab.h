// Builds a BpeTokenizerSpec from a GGUF file's tokenizer.ggml.* metadata:
//   model "gpt2":  byte-level BPE (tokens + merges); tokenizer.ggml.pre names the split regex.
//   model "llama": SentencePiece BPE (tokens + scores, "▁" for spaces, <0xXX> byte fallback);
//                  merges are derived from the scores the way HF's SentencePiece converter does.
// Control and unknown tokens (token_type 3, 2) become special added tokens, user-defined ones (4)
// plain added tokens. BOS/EOS ids and add_bos_token / add_eos_token come from the metadata.
#pragma once

#include "common/gguf_reader.h"
#include "common/status.h"
#include "scheduler/tokenizer/tokenizer_spec.h"

namespace ite {

StatusOr<BpeTokenizerSpec> SpecFromGguf(const GgufFile& file);

// Pre-tokenizer steps for a tokenizer.ggml.pre value ("" = absent: plain GPT-2 regex).
StatusOr<std::vector<PreTokenizerStep>> PreTokenizerForGgufPre(const std::string& pre,
                                                               const std::string& source);

}  // namespace ite

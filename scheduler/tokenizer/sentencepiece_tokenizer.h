// Tokenizer over a SentencePiece tokenizer.model through libsentencepiece. Control pieces (<s>,
// </s>, ...) written in the text are parsed as special tokens first, like HF's slow tokenizers.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "scheduler/tokenizer/tokenizer.h"

namespace ite {

StatusOr<std::unique_ptr<Tokenizer>> CreateSentencePieceTokenizer(const std::string& path);

}  // namespace ite

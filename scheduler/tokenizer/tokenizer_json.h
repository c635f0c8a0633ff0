// Reads a Hugging Face tokenizer.json (BPE models) into a BpeTokenizerSpec. Every malformed or
// unsupported part gives a Status naming `source` and the JSON field.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"
#include "scheduler/tokenizer/tokenizer_spec.h"

namespace ite {

StatusOr<BpeTokenizerSpec> ParseTokenizerJson(std::string_view json, const std::string& source);

}  // namespace ite

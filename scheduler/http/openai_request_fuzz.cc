// Fuzz target for the OpenAI request parsers: any bytes, as a completions, chat, tokenize or
// detokenize body, must parse or fail with INVALID_ARGUMENT naming something, never crash,
// hang or throw; an accepted request must be well-formed for the intake.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "scheduler/http/openai_request.h"

namespace {

void Require(bool condition) {
  if (!condition) std::abort();
}

void CheckError(const ite::Status& status) {
  Require(status.code() == ite::StatusCode::kInvalidArgument && !status.message().empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (ite::OpenAiEndpoint endpoint :
       {ite::OpenAiEndpoint::kCompletions, ite::OpenAiEndpoint::kChat}) {
    ite::StatusOr<ite::OpenAiRequest> r = ite::ParseOpenAiRequest(endpoint, body);
    if (!r.ok()) {
      CheckError(r.status());
      (void)ite::OpenAiParamOf(r.status().message());
      continue;
    }
    Require(!r->inputs.empty() && r->n >= 1);
    for (const ite::GenerateInput& in : r->inputs) {
      const ite::PromptInput& p = in.prompt;
      Require(p.text.has_value() + p.chat.has_value() + p.token_ids.has_value() == 1);
    }
  }
  ite::StatusOr<ite::TokenizeBody> t = ite::ParseTokenizeBody(body);
  if (!t.ok()) CheckError(t.status());
  ite::StatusOr<std::vector<int32_t>> d = ite::ParseDetokenizeBody(body);
  if (!d.ok()) CheckError(d.status());
  return 0;
}

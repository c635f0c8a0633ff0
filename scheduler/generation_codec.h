// ite.v1.Generation messages <-> the proto-free intake types (GenerateInput, GenerationChunk).
// Only field copying: every check is RequestBuilder's, so gRPC rejects what HTTP rejects.
#pragma once

#include <string>

#include "proto/ite/v1/generation.pb.h"
#include "scheduler/generate_input.h"
#include "scheduler/generation_session.h"

namespace ite {

GenerateInput GenerateInputFromProto(const ite::v1::GenerateRequest& request);
PromptInput PromptInputFromProto(const ite::v1::TokenizeRequest& request);

// Fills `out` (cleared first) from one chunk; `request_id` is set when not empty (first chunk).
void ChunkToProto(const GenerationChunk& chunk, const std::string& request_id,
                  ite::v1::GenerateResponse* out);

}  // namespace ite

// Fuzz target for the gRPC edge's request parser: any bytes, as a GenerateRequest or a
// TokenizeRequest, must parse or fail with INVALID_ARGUMENT and a message, never crash or hang;
// a parsed message must serialize again.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "proto/ite/v1/generation.pb.h"
#include "proto/request_parser.h"

namespace {

void Require(bool condition) {
  if (!condition) std::abort();
}

void Check(std::string_view bytes, google::protobuf::Message* m) {
  ite::Status s = ite::ParseRequestMessage(bytes, m);
  if (s.ok()) {
    std::string again;
    Require(m->SerializeToString(&again));
  } else {
    Require(s.code() == ite::StatusCode::kInvalidArgument && !s.message().empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  ite::v1::GenerateRequest generate;
  Check(bytes, &generate);
  ite::v1::TokenizeRequest tokenize;
  Check(bytes, &tokenize);
  return 0;
}

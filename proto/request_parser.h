// Parses a request message from its wire bytes at the gRPC edge, so that a bad message gets
// INVALID_ARGUMENT with a message naming the problem, instead of the INTERNAL with an empty
// message that gRPC's own deserializer returns. Protobuf rejects a proto3 `string` field holding
// invalid UTF-8 without saying which; this parser then names the field ("stop[1]: not valid
// UTF-8", "chat.messages[0].role: ..."), and bytes that are no message of the type at all get
// "request: not a valid ite.v1.GenerateRequest message".
//
// Thread-safe: the per-type lookup tables are built once, under a lock.
#pragma once

#include <google/protobuf/message.h>
#include <grpcpp/support/byte_buffer.h>

#include <string_view>

#include "common/status.h"

namespace ite {

// Fills `out` (of any generated message type) from `bytes`; InvalidArgument on failure.
Status ParseRequestMessage(std::string_view bytes, google::protobuf::Message* out);
Status ParseRequestMessage(const grpc::ByteBuffer& bytes, google::protobuf::Message* out);

}  // namespace ite

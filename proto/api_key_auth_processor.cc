#include "proto/api_key_auth_processor.h"

#include <string_view>

namespace ite {
namespace {

constexpr std::string_view kOpenPrefix = "/grpc.health.v1.Health/";

std::string_view View(const grpc::string_ref& s) { return {s.data(), s.size()}; }

}  // namespace

grpc::Status ApiKeyAuthProcessor::Process(const InputMetadata& auth_metadata,
                                          grpc::AuthContext* /*context*/,
                                          OutputMetadata* consumed_auth_metadata,
                                          OutputMetadata* /*response_metadata*/) {
  auto path = auth_metadata.find(":path");
  if (path != auth_metadata.end() &&
      View(path->second).substr(0, kOpenPrefix.size()) == kOpenPrefix) {
    return grpc::Status::OK;
  }
  auto header = auth_metadata.find("authorization");
  if (header == auth_metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "an API key is required: send metadata 'authorization: Bearer <key>'");
  }
  if (!keys_->AllowsAuthorization(View(header->second))) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid API key");
  }
  // Consumed: handlers (and anything they log) never see the key.
  consumed_auth_metadata->insert({std::string(header->first.data(), header->first.size()),
                                  std::string(header->second.data(), header->second.size())});
  return grpc::Status::OK;
}

}  // namespace ite

// Checks the `authorization: Bearer KEY` metadata of every call against the API keys before
// gRPC runs a handler, so the services themselves know nothing of keys. The health service
// (grpc.health.v1, what probes ask) stays open. A refused call ends UNAUTHENTICATED with a
// message that never repeats what the client sent.
//
// Threads: gRPC calls Process on its own threads, concurrently; the keys are immutable.
#pragma once

#include <grpcpp/security/auth_metadata_processor.h>

#include <memory>

#include "common/api_keys.h"

namespace ite {

class ApiKeyAuthProcessor final : public grpc::AuthMetadataProcessor {
 public:
  explicit ApiKeyAuthProcessor(std::shared_ptr<const ApiKeys> keys) : keys_(std::move(keys)) {}

  // A digest and a compare: cheap enough for gRPC's own thread, no hop to another pool.
  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  std::shared_ptr<const ApiKeys> keys_;
};

}  // namespace ite

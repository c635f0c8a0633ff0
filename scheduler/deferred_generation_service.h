// The ite.v1.Generation service as registered before the scheduler can run requests: every call
// answers UNAVAILABLE ("starting") until the real GenerationService is attached, then forwards
// to it. gRPC fixes a server's services when it starts, and the scheduler process must listen
// (health, SIGTERM) while it still waits for its first worker.
//
// Threads: Attach from any thread, once; the handlers run on gRPC's threads.
#pragma once

#include <atomic>

#include "proto/ite/v1/generation.grpc.pb.h"

namespace ite {

class DeferredGenerationService final : public ite::v1::Generation::Service {
 public:
  // `service` must outlive every call this service forwards (the server's lifetime).
  void Attach(ite::v1::Generation::Service* service) { target_.store(service); }

  grpc::Status Generate(grpc::ServerContext* context, const ite::v1::GenerateRequest* request,
                        grpc::ServerWriter<ite::v1::GenerateResponse>* writer) override;
  grpc::Status Tokenize(grpc::ServerContext* context, const ite::v1::TokenizeRequest* request,
                        ite::v1::TokenizeResponse* response) override;
  grpc::Status ModelInfo(grpc::ServerContext* context, const ite::v1::ModelInfoRequest* request,
                         ite::v1::ModelInfoResponse* response) override;
  grpc::Status Stats(grpc::ServerContext* context, const ite::v1::StatsRequest* request,
                     ite::v1::StatsResponse* response) override;

 private:
  std::atomic<ite::v1::Generation::Service*> target_{nullptr};
};

}  // namespace ite

// The public ite.v1.Generation gRPC service of ite-scheduler (proto/ite/v1/generation.proto).
//
// A thin adapter over RequestIntake: Generate translates the request (generation_codec.h), the
// intake validates, tokenizes and submits it (INVALID_ARGUMENT with a message naming the field),
// and the handler thread writes the session's chunks to the stream. A client that disconnects or
// cancels is noticed within ~50 ms and the request is cancelled in the scheduler (its KV blocks
// freed at once). Nothing throws across the edge.
//
// Threads: gRPC's sync server runs each call on a thread of its own pool; every handler may run
// concurrently with the others.
#pragma once

#include <string>
#include <vector>

#include "proto/ite/v1/generation.grpc.pb.h"
#include "scheduler/request_intake.h"

namespace ite {

class GenerationService final : public ite::v1::Generation::Service {
 public:
  // `intake` must outlive the service. `worker_addresses[i]` names worker i in Stats;
  // `block_size` (tokens per KV block, the same on every worker) is for ModelInfo.
  GenerationService(RequestIntake* intake, std::vector<std::string> worker_addresses,
                    int32_t block_size);

  grpc::Status Generate(grpc::ServerContext* context, const ite::v1::GenerateRequest* request,
                        grpc::ServerWriter<ite::v1::GenerateResponse>* writer) override;
  grpc::Status Tokenize(grpc::ServerContext* context, const ite::v1::TokenizeRequest* request,
                        ite::v1::TokenizeResponse* response) override;
  grpc::Status ModelInfo(grpc::ServerContext* context, const ite::v1::ModelInfoRequest* request,
                         ite::v1::ModelInfoResponse* response) override;
  grpc::Status Stats(grpc::ServerContext* context, const ite::v1::StatsRequest* request,
                     ite::v1::StatsResponse* response) override;

 private:
  RequestIntake* intake_;
  std::vector<std::string> worker_addresses_;
  int32_t block_size_;
};

}  // namespace ite

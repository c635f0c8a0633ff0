// The public ite.v1.Generation gRPC service of ite-scheduler (proto/ite/v1/generation.proto).
//
// Generate: RequestBuilder validates and tokenizes (INVALID_ARGUMENT with a message naming the
// field), the Scheduler runs it, and the handler thread forwards the scheduler's events as
// stream chunks. A client that disconnects or cancels is noticed within ~50 ms and the request
// is cancelled in the scheduler (its KV blocks freed at once). Nothing throws across the edge.
//
// Threads: gRPC's sync server runs each call on a thread of its own pool; every handler may run
// concurrently with the others.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "proto/ite/v1/generation.grpc.pb.h"
#include "scheduler/request_builder.h"
#include "scheduler/scheduler.h"

namespace ite {

class GenerationService final : public ite::v1::Generation::Service {
 public:
  // `scheduler` must be started and outlive the service. `worker_addresses[i]` names worker i in
  // Stats; `block_size` (tokens per KV block, the same on every worker) is for ModelInfo.
  GenerationService(Scheduler* scheduler, std::shared_ptr<const Tokenizer> tokenizer,
                    std::unique_ptr<RequestBuilder> builder,
                    std::vector<std::string> worker_addresses, int32_t block_size);

  grpc::Status Generate(grpc::ServerContext* context, const ite::v1::GenerateRequest* request,
                        grpc::ServerWriter<ite::v1::GenerateResponse>* writer) override;
  grpc::Status Tokenize(grpc::ServerContext* context, const ite::v1::TokenizeRequest* request,
                        ite::v1::TokenizeResponse* response) override;
  grpc::Status ModelInfo(grpc::ServerContext* context, const ite::v1::ModelInfoRequest* request,
                         ite::v1::ModelInfoResponse* response) override;
  grpc::Status Stats(grpc::ServerContext* context, const ite::v1::StatsRequest* request,
                     ite::v1::StatsResponse* response) override;

  // New Generate calls get UNAVAILABLE from now on; running ones continue (used before a
  // draining shutdown).
  void StopAccepting() { accepting_ = false; }

 private:
  Scheduler* scheduler_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::unique_ptr<RequestBuilder> builder_;
  std::vector<std::string> worker_addresses_;
  int32_t block_size_;
  std::atomic<bool> accepting_{true};
  std::atomic<int64_t> next_request_id_{0};
  std::atomic<int64_t> generated_tokens_{0};
};

}  // namespace ite

// The public ite.v1.Generation gRPC service of ite-scheduler (proto/ite/v1/generation.proto).
//
// A thin adapter over RequestIntake on gRPC's callback API, so that no thread is held per call
// (a streaming Generate is a GenerateStream reactor). Every method takes its request as bytes
// and parses it itself (proto/request_parser.h): invalid UTF-8 in a string field, or bytes that
// are no message at all, get INVALID_ARGUMENT naming the field rather than gRPC's INTERNAL with
// an empty message. The intake validates and tokenizes (INVALID_ARGUMENT naming the field).
// Nothing throws across the edge.
//
// The service is registered before the scheduler can run requests (gRPC fixes a server's
// services when it starts, and the process must answer health and SIGTERM while it waits for a
// worker): until Attach, every call answers UNAVAILABLE ("starting").
//
// Threads: Attach once, from any thread; the handlers run on gRPC's threads, concurrently.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "proto/ite/v1/generation.grpc.pb.h"
#include "scheduler/request_intake.h"

namespace ite {

using RawGenerationCallbackService = ite::v1::Generation::WithRawCallbackMethod_Generate<
    ite::v1::Generation::WithRawCallbackMethod_Tokenize<
        ite::v1::Generation::WithRawCallbackMethod_ModelInfo<
            ite::v1::Generation::WithRawCallbackMethod_Stats<ite::v1::Generation::Service>>>>;

class GenerationService final : public RawGenerationCallbackService {
 public:
  struct Backend {
    RequestIntake* intake = nullptr;            // must outlive the service
    std::vector<std::string> worker_addresses;  // worker i's name in Stats
    int32_t block_size = 0;  // tokens per KV block, the same on every worker (ModelInfo)
  };

  GenerationService() = default;
  ~GenerationService() override;

  // From now on calls are served by `backend`.
  void Attach(Backend backend);

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ModelInfo(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;

 private:
  std::atomic<const Backend*> backend_{nullptr};  // owned; set once
};

}  // namespace ite

#include "scheduler/deferred_generation_service.h"

namespace ite {
namespace {

grpc::Status NotYet() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "the scheduler is starting: no worker has answered yet");
}

}  // namespace

grpc::Status DeferredGenerationService::Generate(
    grpc::ServerContext* context, const ite::v1::GenerateRequest* request,
    grpc::ServerWriter<ite::v1::GenerateResponse>* writer) {
  ite::v1::Generation::Service* target = target_.load();
  return target ? target->Generate(context, request, writer) : NotYet();
}

grpc::Status DeferredGenerationService::Tokenize(grpc::ServerContext* context,
                                                 const ite::v1::TokenizeRequest* request,
                                                 ite::v1::TokenizeResponse* response) {
  ite::v1::Generation::Service* target = target_.load();
  return target ? target->Tokenize(context, request, response) : NotYet();
}

grpc::Status DeferredGenerationService::ModelInfo(grpc::ServerContext* context,
                                                  const ite::v1::ModelInfoRequest* request,
                                                  ite::v1::ModelInfoResponse* response) {
  ite::v1::Generation::Service* target = target_.load();
  return target ? target->ModelInfo(context, request, response) : NotYet();
}

grpc::Status DeferredGenerationService::Stats(grpc::ServerContext* context,
                                              const ite::v1::StatsRequest* request,
                                              ite::v1::StatsResponse* response) {
  ite::v1::Generation::Service* target = target_.load();
  return target ? target->Stats(context, request, response) : NotYet();
}

}  // namespace ite

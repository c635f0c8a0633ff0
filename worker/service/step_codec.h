// Conversions between the worker step structs (worker/service/step.h) and their ite.v1.Worker
// protobuf messages. Used by both ends: the gRPC worker service and the scheduler's gRPC worker
// client. Decoding validates only what the wire can get wrong (enum strings); the engine
// validates semantics (block ids, vocabulary, unknown sequences).
#pragma once

#include "common/status.h"
#include "proto/ite/v1/worker.pb.h"
#include "worker/service/step.h"

namespace ite {

void EncodeModelConfig(const ModelConfig& config, ite::v1::WorkerModelConfig* out);
StatusOr<ModelConfig> DecodeModelConfig(const ite::v1::WorkerModelConfig& in);

void EncodeWorkerInfo(const WorkerInfo& info, ite::v1::WorkerInfo* out);
StatusOr<WorkerInfo> DecodeWorkerInfo(const ite::v1::WorkerInfo& in);

void EncodeStepRequest(const StepRequest& request, ite::v1::StepRequest* out);
StepRequest DecodeStepRequest(const ite::v1::StepRequest& in);

void EncodeStepResult(const StepResult& result, ite::v1::StepResult* out);
StepResult DecodeStepResult(const ite::v1::StepResult& in);

}  // namespace ite

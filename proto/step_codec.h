// Conversions between the step protocol structs (common/protocol/step.h) and their ite.v1.Worker
// protobuf messages. Used by both ends: the gRPC worker service and the scheduler's gRPC worker
// client. Decoding validates only what the wire can get wrong (enum strings); the engine
// validates semantics (block ids, vocabulary, unknown sequences).
#pragma once

#include "common/protocol/step.h"
#include "common/status.h"
#include "proto/ite/v1/worker.pb.h"

namespace ite {

// WorkerModelConfig carries a full architecture on the wire; only the fields ModelInfo has are
// encoded (the others stay zero) and read back.
void EncodeModelInfo(const ModelInfo& model, ite::v1::WorkerModelConfig* out);
StatusOr<ModelInfo> DecodeModelInfo(const ite::v1::WorkerModelConfig& in);

void EncodeWorkerInfo(const WorkerInfo& info, ite::v1::WorkerInfo* out);
StatusOr<WorkerInfo> DecodeWorkerInfo(const ite::v1::WorkerInfo& in);

void EncodeStepRequest(const StepRequest& request, ite::v1::StepRequest* out);
StepRequest DecodeStepRequest(const ite::v1::StepRequest& in);

void EncodeStepResult(const StepResult& result, ite::v1::StepResult* out);
StepResult DecodeStepResult(const ite::v1::StepResult& in);

}  // namespace ite

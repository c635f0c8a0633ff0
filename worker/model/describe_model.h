// The slim description of a model that a worker reports to the scheduler (WorkerInfo.model).
#pragma once

#include "common/protocol/model_info.h"
#include "worker/model/model_config.h"

namespace ite {

ModelInfo DescribeModel(const ModelConfig& config);

}  // namespace ite

// An architecture's forward pass, written once over ModelOps. The weights are handed to the ops
// at creation (ModelOps::Load*), in whatever form the ops keep them.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "worker/model/model_config.h"
#include "worker/model/model_ops.h"
#include "worker/model/model_weights.h"

namespace ite {

class Model {
 public:
  virtual ~Model() = default;
  // Runs the step planned in `ops`: K/V of every token into the cache, logits of the planned
  // rows into the ops' logits buffer.
  virtual Status Forward(ModelOps* ops) const = 0;
};

// The architecture named by config.arch, its weights loaded into `ops`. Fails with a Status
// naming the tensor when a weight is missing or mis-shaped.
StatusOr<std::unique_ptr<Model>> CreateModel(const ModelConfig& config, const ModelWeights& weights,
                                             ModelOps* ops);

// Each architecture's factory (one file each); CreateModel picks one.
StatusOr<std::unique_ptr<Model>> CreateLlamaModel(const ModelConfig& config,
                                                  const ModelWeights& weights, ModelOps* ops);

// Bytes of the distinct weight tensors (a tied LM head shares the embedding's and counts once).
int64_t WeightBytes(const ModelWeights& weights);

// One line for start-up logs: the weights' encodings and resident bytes (a mixed matrix's
// segments each at their own format's size), e.g.
// "F32 (61 tensors), Q4_1 (210), Q8_0 (1): 103.6 MiB", or with mixed fused matrices
// "..., Q5_0+Q8_0 (14), ...".
std::string DescribeWeights(const ModelWeights& weights);

// Shared by the architectures: `t` is present with exactly `shape`, or an error naming `name`.
Status CheckWeightShape(const Tensor& t, const std::string& name, std::vector<int64_t> shape);

// Shared by the backends: config fields every architecture needs, checked once.
Status ValidateModelConfig(const ModelConfig& config);

}  // namespace ite

#include "worker/model/model.h"

#include <fmt/format.h>

#include <map>
#include <string>
#include <utility>
#include <unordered_set>

namespace ite {

Status ValidateModelConfig(const ModelConfig& c) {
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 ||
      c.num_kv_heads <= 0 || c.head_dim <= 0 || c.head_dim % 2 != 0 ||
      c.num_heads % c.num_kv_heads != 0 || c.intermediate_size <= 0) {
    return InvalidArgument(
        "bad model config (vocab {}, hidden {}, layers {}, heads {}/{}, head_dim {}, "
        "intermediate {})",
        c.vocab_size, c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim,
        c.intermediate_size);
  }
  return Status::Ok();
}

Status CheckWeightShape(const Tensor& t, const std::string& name, std::vector<int64_t> shape) {
  if (t.empty()) return InvalidArgument("weight {} is missing", name);
  if (t.shape != shape) {
    Tensor want;
    want.shape = std::move(shape);
    return InvalidArgument("weight {} has shape {}, expected {}", name, t.ShapeString(),
                           want.ShapeString());
  }
  return Status::Ok();
}

namespace {

// Calls fn once per distinct tensor (a tied LM head shares the embedding's storage).
template <class Fn>
void ForEachDistinct(const ModelWeights& w, Fn fn) {
  std::unordered_set<const void*> seen;
  auto visit = [&](const Tensor& t) {
    if (!t.empty() && seen.insert(t.data).second) fn(t);
  };
  visit(w.token_embedding);
  visit(w.final_norm);
  visit(w.lm_head);
  for (const LayerWeights& l : w.layers) {
    for (const Tensor* t :
         {&l.attn_norm, &l.wqkv, &l.bqkv, &l.wo, &l.ffn_norm, &l.w_gate_up, &l.w_down})
      visit(*t);
  }
}

}  // namespace

int64_t WeightBytes(const ModelWeights& w) {
  int64_t n = 0;
  ForEachDistinct(w, [&](const Tensor& t) { n += static_cast<int64_t>(t.nbytes()); });
  return n;
}

std::string DescribeWeights(const ModelWeights& w) {
  // Keyed by the first (or only) dtype, so the order is the DType order as before; a mixed
  // matrix counts under its segments' formats joined by '+', e.g. "Q5_0+Q8_0".
  std::map<std::pair<DType, std::string>, int> count;
  ForEachDistinct(w, [&](const Tensor& t) {
    std::string name = DTypeName(t.dtype);
    if (t.mixed()) {
      name.clear();
      for (const RowSegment& s : *t.segments)
        name += fmt::format("{}{}", name.empty() ? "" : "+", DTypeName(s.dtype));
    }
    ++count[{t.dtype, name}];
  });
  std::string out;
  for (const auto& [key, n] : count) {
    out += fmt::format("{}{} ({}{})", out.empty() ? "" : ", ", key.second, n,
                       out.empty() ? " tensors" : "");
  }
  return fmt::format("{}: {:.1f} MiB", out, WeightBytes(w) / 1048576.0);
}

StatusOr<std::unique_ptr<Model>> CreateModel(const ModelConfig& config, const ModelWeights& weights,
                                             ModelOps* ops) {
  ITE_RETURN_IF_ERROR(ValidateModelConfig(config));
  switch (config.arch) {
    // Qwen2 is the Llama graph with a bias on the fused QKV projection, which the weights carry.
    case ModelArch::kLlama:
    case ModelArch::kQwen2:
      return CreateLlamaModel(config, weights, ops);
  }
  return Unimplemented("model architecture {} has no forward pass", static_cast<int>(config.arch));
}

}  // namespace ite

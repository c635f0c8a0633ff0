// The Llama decoder (also Qwen2, whose only difference is the QKV bias):
//   x = embed(tokens)
//   per layer: h = RmsNorm(x); qkv = h Wqkv^T (+ b); RoPE(q, k) and K/V into the cache;
//              x += Attention(q, cache) Wo^T; h = RmsNorm(x); x += (silu(h Wg^T) * h Wu^T) Wd^T
//   logits = RmsNorm(x[logit rows]) Wlm^T
// Each residual add is fused into the RmsNorm that follows it (AddRmsNorm).
#include <vector>

#include "worker/model/model.h"

namespace ite {
namespace {

struct LlamaLayer {
  OpWeight attn_norm, qkv, o, ffn_norm, gate_up, down;
};

class LlamaModel final : public Model {
 public:
  explicit LlamaModel(const ModelConfig& config) : c_(config) {}

  Status Load(const ModelWeights& w, ModelOps* ops) {
    if (static_cast<int32_t>(w.layers.size()) != c_.num_layers)
      return InvalidArgument("{} layers of weights for num_layers {}", w.layers.size(),
                             c_.num_layers);
    const int32_t hidden = c_.hidden_size, inter = c_.intermediate_size;
    ITE_RETURN_IF_ERROR(
        CheckWeightShape(w.token_embedding, "token_embedding", {c_.vocab_size, hidden}));
    ITE_ASSIGN_OR_RETURN(embedding_, ops->LoadTable(w.token_embedding, "token_embedding"));
    auto matrix = [&](const Tensor& t, const Tensor& bias, const std::string& name, int32_t out,
                      int32_t in) -> StatusOr<OpWeight> {
      ITE_RETURN_IF_ERROR(CheckWeightShape(t, name, {out, in}));
      return ops->LoadMatrix(t, bias, name);
    };
    auto vector = [&](const Tensor& t, const std::string& name) -> StatusOr<OpWeight> {
      ITE_RETURN_IF_ERROR(CheckWeightShape(t, name, {hidden}));
      return ops->LoadVector(t, name);
    };
    const Tensor none;
    for (int32_t l = 0; l < c_.num_layers; ++l) {
      const LayerWeights& lw = w.layers[l];
      const std::string p = fmt::format("layers.{}.", l);
      if (c_.qkv_bias) {
        ITE_RETURN_IF_ERROR(CheckWeightShape(lw.bqkv, p + "bqkv", {c_.qkv_dim()}));
      } else if (!lw.bqkv.empty()) {
        return InvalidArgument("weight {}bqkv present but the config has no qkv bias", p);
      }
      LlamaLayer layer;
      ITE_ASSIGN_OR_RETURN(layer.attn_norm, vector(lw.attn_norm, p + "attn_norm"));
      ITE_ASSIGN_OR_RETURN(layer.qkv, matrix(lw.wqkv, lw.bqkv, p + "wqkv", c_.qkv_dim(), hidden));
      ITE_ASSIGN_OR_RETURN(layer.o, matrix(lw.wo, none, p + "wo", hidden, c_.q_dim()));
      ITE_ASSIGN_OR_RETURN(layer.ffn_norm, vector(lw.ffn_norm, p + "ffn_norm"));
      ITE_ASSIGN_OR_RETURN(layer.gate_up,
                           matrix(lw.w_gate_up, none, p + "w_gate_up", 2 * inter, hidden));
      ITE_ASSIGN_OR_RETURN(layer.down, matrix(lw.w_down, none, p + "w_down", hidden, inter));
      layers_.push_back(layer);
    }
    ITE_ASSIGN_OR_RETURN(final_norm_, vector(w.final_norm, "final_norm"));
    const bool tied = w.lm_head.empty() && c_.tie_embeddings;
    ITE_ASSIGN_OR_RETURN(lm_head_, matrix(tied ? w.token_embedding : w.lm_head, none, "lm_head",
                                          c_.vocab_size, hidden));
    return Status::Ok();
  }

  Status Forward(ModelOps* ops) const override {
    const int32_t n = ops->num_tokens();
    const int32_t hidden = c_.hidden_size, inter = c_.intermediate_size;
    const float eps = c_.rms_norm_eps;
    Activation x = ops->Buffer(ActBuffer::kResidual, n, hidden);
    Activation h = ops->Buffer(ActBuffer::kNormed, n, hidden);
    Activation qkv = ops->Buffer(ActBuffer::kQkv, n, c_.qkv_dim());
    Activation attn = ops->Buffer(ActBuffer::kAttn, n, c_.q_dim());
    Activation proj = ops->Buffer(ActBuffer::kProj, n, hidden);
    Activation gate_up = ops->Buffer(ActBuffer::kGateUp, n, 2 * inter);
    Activation mlp = ops->Buffer(ActBuffer::kMlp, n, inter);

    ITE_RETURN_IF_ERROR(ops->Embedding(embedding_, x));
    for (int32_t l = 0; l < c_.num_layers; ++l) {
      const LlamaLayer& layer = layers_[l];
      if (l == 0) {
        ITE_RETURN_IF_ERROR(ops->RmsNorm(x, layer.attn_norm, eps, h));
      } else {  // the previous layer's MLP output joins the residual here
        ITE_RETURN_IF_ERROR(ops->AddRmsNorm(x, proj, layer.attn_norm, eps, h));
      }
      ITE_RETURN_IF_ERROR(ops->Linear(h, layer.qkv, qkv));
      ITE_RETURN_IF_ERROR(ops->RopeKvWrite(l, qkv));
      ITE_RETURN_IF_ERROR(ops->Attention(l, qkv, attn));
      ITE_RETURN_IF_ERROR(ops->Linear(attn, layer.o, proj));
      ITE_RETURN_IF_ERROR(ops->AddRmsNorm(x, proj, layer.ffn_norm, eps, h));
      ITE_RETURN_IF_ERROR(ops->Linear(h, layer.gate_up, gate_up));
      ITE_RETURN_IF_ERROR(ops->SiluMul(gate_up, mlp));
      ITE_RETURN_IF_ERROR(ops->Linear(mlp, layer.down, proj));
    }
    const int32_t rows = ops->num_logit_rows();
    if (rows == 0) return Status::Ok();
    // The final norm runs on every row (cheap next to a layer); only the rows whose logits
    // are needed go through the LM head.
    ITE_RETURN_IF_ERROR(ops->AddRmsNorm(x, proj, final_norm_, eps, h));
    Activation last_h = ops->Buffer(ActBuffer::kLogitRows, rows, hidden);
    ITE_RETURN_IF_ERROR(ops->GatherLogitRows(h, last_h));
    return ops->LmHead(last_h, lm_head_);
  }

 private:
  ModelConfig c_;
  OpWeight embedding_;
  std::vector<LlamaLayer> layers_;
  OpWeight final_norm_;
  OpWeight lm_head_;
};

}  // namespace

StatusOr<std::unique_ptr<Model>> CreateLlamaModel(const ModelConfig& config,
                                                  const ModelWeights& weights, ModelOps* ops) {
  auto model = std::make_unique<LlamaModel>(config);
  ITE_RETURN_IF_ERROR(model->Load(weights, ops));
  return std::unique_ptr<Model>(std::move(model));
}

}  // namespace ite

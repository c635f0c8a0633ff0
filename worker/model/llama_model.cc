// The Llama decoder (also Qwen2, whose only difference is the QKV bias):
//   x = embed(tokens)
//   per layer: h = RmsNorm(x); qkv = h Wqkv^T (+ b); RoPE(q, k) and K/V into the cache;
//              x += Attention(q, cache) Wo^T; h = RmsNorm(x); x += (silu(h Wg^T) * h Wu^T) Wd^T
//   logits = RmsNorm(x[logit rows]) Wlm^T
// Written as four operators per layer (norm + QKV + RoPE + KV write; attention + O + residual;
// norm + gate|up + silu * mul; down + residual), each norm joined to the product after it and
// each residual add to the product before it, so that a backend can fuse them (the CUDA backend
// runs a small-batch decode layer as five kernels, where asked a one-sequence one as four, and,
// where asked, a one-token step's whole stack as one: the DecoderStack operator).
//
// Tensor-parallel (config.shard.size > 1, tensor_parallel.h): the config's head counts and
// intermediate size are this rank's, so Q|K|V, attention and gate|up run on its heads and
// columns unchanged; the O and down products are partial sums that an all-reduce completes
// before the residual add (LinearAllReduceAdd), and the LM head covers the rank's vocabulary
// rows (LmHeadShard).
#include <vector>

#include "worker/model/model.h"

namespace ite {
namespace {

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
    auto normed = [&](const Tensor& norm, const std::string& norm_name, const Tensor& t,
                      const Tensor& bias, const std::string& name,
                      int32_t out) -> StatusOr<OpWeight> {
      ITE_RETURN_IF_ERROR(CheckWeightShape(norm, norm_name, {hidden}));
      ITE_RETURN_IF_ERROR(CheckWeightShape(t, name, {out, hidden}));
      return ops->LoadNormedMatrix(norm, t, bias, name);
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
      DecoderLayerWeights layer;
      ITE_ASSIGN_OR_RETURN(layer.qkv, normed(lw.attn_norm, p + "attn_norm", lw.wqkv, lw.bqkv,
                                             p + "wqkv", c_.qkv_dim()));
      ITE_ASSIGN_OR_RETURN(layer.o, matrix(lw.wo, none, p + "wo", hidden, c_.q_dim()));
      ITE_ASSIGN_OR_RETURN(layer.gate_up, normed(lw.ffn_norm, p + "ffn_norm", lw.w_gate_up, none,
                                                 p + "w_gate_up", 2 * inter));
      ITE_ASSIGN_OR_RETURN(layer.down, matrix(lw.w_down, none, p + "w_down", hidden, inter));
      layers_.push_back(layer);
    }
    ITE_RETURN_IF_ERROR(CheckWeightShape(w.final_norm, "final_norm", {hidden}));
    ITE_ASSIGN_OR_RETURN(final_norm_, ops->LoadVector(w.final_norm, "final_norm"));
    const bool tied = w.lm_head.empty() && c_.tie_embeddings;
    const int32_t lm_rows = c_.shard.size > 1 ? c_.shard.lm_head_rows : c_.vocab_size;
    ITE_ASSIGN_OR_RETURN(
        lm_head_, matrix(tied ? w.token_embedding : w.lm_head, none, "lm_head", lm_rows, hidden));
    return Status::Ok();
  }

  Status Forward(ModelOps* ops) const override {
    const int32_t n = ops->num_tokens();
    const int32_t hidden = c_.hidden_size, inter = c_.intermediate_size;
    const float eps = c_.rms_norm_eps;
    const bool parallel = c_.shard.size > 1;
    // residual += x @ w^T, the product summed over the ranks first when it is a partial one.
    auto linear_add = [&](Activation in, const OpWeight& w, Activation residual) {
      return parallel ? ops->LinearAllReduceAdd(in, w, residual) : ops->LinearAdd(in, w, residual);
    };
    Activation x = ops->Buffer(ActBuffer::kResidual, n, hidden);
    Activation qkv = ops->Buffer(ActBuffer::kQkv, n, c_.qkv_dim());
    Activation attn = ops->Buffer(ActBuffer::kAttn, n, c_.q_dim());
    Activation mlp = ops->Buffer(ActBuffer::kMlp, n, inter);

    ITE_RETURN_IF_ERROR(ops->Embedding(embedding_, x));
    bool fused = false;
    if (!parallel) {
      ITE_ASSIGN_OR_RETURN(fused, ops->DecoderStack(x, layers_, eps));
    }
    for (int32_t l = 0; l < c_.num_layers && !fused; ++l) {
      const DecoderLayerWeights& layer = layers_[l];
      ITE_RETURN_IF_ERROR(ops->NormLinearRopeKv(l, x, layer.qkv, eps, qkv));
      if (parallel) {
        ITE_RETURN_IF_ERROR(ops->Attention(l, qkv, attn));
        ITE_RETURN_IF_ERROR(ops->LinearAllReduceAdd(attn, layer.o, x));
      } else {
        ITE_RETURN_IF_ERROR(ops->AttentionLinearAdd(l, qkv, layer.o, attn, x));
      }
      ITE_RETURN_IF_ERROR(ops->NormLinearSiluMul(x, layer.gate_up, eps, mlp));
      ITE_RETURN_IF_ERROR(linear_add(mlp, layer.down, x));
    }
    const int32_t rows = ops->num_logit_rows();
    if (rows == 0) return Status::Ok();
    // Only the rows whose logits are needed are normalised and go through the LM head.
    Activation last_h = ops->Buffer(ActBuffer::kLogitRows, rows, hidden);
    ITE_RETURN_IF_ERROR(ops->NormLogitRows(x, final_norm_, eps, last_h));
    if (parallel) return ops->LmHeadShard(last_h, lm_head_, c_.shard.lm_head_begin, c_.vocab_size);
    return ops->LmHead(last_h, lm_head_);
  }

 private:
  ModelConfig c_;
  OpWeight embedding_;
  std::vector<DecoderLayerWeights> layers_;
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

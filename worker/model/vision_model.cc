// CLIP vision tower + LLaVA projector:
//   x = [0, patches] Wpatch^T + (position table, class embedding folded into row 0)
//   x = LayerNorm_pre(x)
//   per layer: x += Attention(LayerNorm1(x) Wqkv^T + b) Wo^T + bo
//              x += act(LayerNorm2(x) W1^T + b1) W2^T + b2
//   features = x[1:] ("default" strategy) or x
//   out = gelu(features Wp1^T + bp1) Wp2^T + bp2
#include "worker/model/vision_model.h"

#include <vector>

#include "worker/model/model.h"

namespace ite {
namespace {

struct VisionLayer {
  OpWeight norm1_w, norm1_b, qkv, o, norm2_w, norm2_b, fc1, fc2;
};

class ClipVisionModel final : public VisionModel {
 public:
  ClipVisionModel(const VisionConfig& v, int32_t text_hidden) : v_(v), text_hidden_(text_hidden) {}

  Status Load(const VisionWeights& w, ModelOps* ops) {
    const int32_t h = v_.hidden_size, ff = v_.intermediate_size, th = text_hidden_;
    const Tensor none;
    auto matrix = [&](const Tensor& t, const Tensor& bias, const std::string& name, int32_t out,
                      int32_t in) -> StatusOr<OpWeight> {
      ITE_RETURN_IF_ERROR(CheckWeightShape(t, name, {out, in}));
      if (!bias.empty()) ITE_RETURN_IF_ERROR(CheckWeightShape(bias, name + ".bias", {out}));
      return ops->LoadMatrix(t, bias, name);
    };
    auto vector = [&](const Tensor& t, const std::string& name, int32_t n) -> StatusOr<OpWeight> {
      ITE_RETURN_IF_ERROR(CheckWeightShape(t, name, {n}));
      return ops->LoadVector(t, name);
    };
    if (static_cast<int32_t>(w.layers.size()) < v_.feature_layers)
      return InvalidArgument("{} vision layers of weights for feature layer {}", w.layers.size(),
                             v_.feature_layers);
    ITE_ASSIGN_OR_RETURN(
        patch_, matrix(w.patch_embedding, none, "vision.patch_embedding", h, v_.patch_dim()));
    ITE_RETURN_IF_ERROR(
        CheckWeightShape(w.position_table, "vision.position_table", {v_.num_positions(), h}));
    ITE_ASSIGN_OR_RETURN(positions_, ops->LoadTable(w.position_table, "vision.position_table"));
    ITE_ASSIGN_OR_RETURN(pre_w_, vector(w.pre_norm_w, "vision.pre_norm_w", h));
    ITE_ASSIGN_OR_RETURN(pre_b_, vector(w.pre_norm_b, "vision.pre_norm_b", h));
    for (int32_t l = 0; l < v_.feature_layers; ++l) {
      const VisionLayerWeights& lw = w.layers[l];
      const std::string p = fmt::format("vision.layers.{}.", l);
      VisionLayer layer;
      ITE_ASSIGN_OR_RETURN(layer.norm1_w, vector(lw.norm1_w, p + "norm1_w", h));
      ITE_ASSIGN_OR_RETURN(layer.norm1_b, vector(lw.norm1_b, p + "norm1_b", h));
      ITE_ASSIGN_OR_RETURN(layer.qkv, matrix(lw.wqkv, lw.bqkv, p + "wqkv", 3 * h, h));
      ITE_ASSIGN_OR_RETURN(layer.o, matrix(lw.wo, lw.bo, p + "wo", h, h));
      ITE_ASSIGN_OR_RETURN(layer.norm2_w, vector(lw.norm2_w, p + "norm2_w", h));
      ITE_ASSIGN_OR_RETURN(layer.norm2_b, vector(lw.norm2_b, p + "norm2_b", h));
      ITE_ASSIGN_OR_RETURN(layer.fc1, matrix(lw.fc1, lw.b1, p + "fc1", ff, h));
      ITE_ASSIGN_OR_RETURN(layer.fc2, matrix(lw.fc2, lw.b2, p + "fc2", h, ff));
      layers_.push_back(layer);
    }
    if (v_.projector_bias && (w.proj_b1.empty() || w.proj_b2.empty()))
      return InvalidArgument("weight projector bias is missing");
    ITE_ASSIGN_OR_RETURN(proj1_, matrix(w.proj_w1, w.proj_b1, "projector.linear_1", th, h));
    ITE_ASSIGN_OR_RETURN(proj2_, matrix(w.proj_w2, w.proj_b2, "projector.linear_2", th, th));
    return Status::Ok();
  }

  StatusOr<Activation> Features(ModelOps* ops, std::span<const float> pixels) const override {
    const int64_t want = int64_t{3} * v_.image_size * v_.image_size;
    if (static_cast<int64_t>(pixels.size()) != want)
      return InvalidArgument("image has {} pixel values, the vision tower takes 3x{}x{}",
                             pixels.size(), v_.image_size, v_.image_size);
    const int32_t n = v_.num_positions(), h = v_.hidden_size, ff = v_.intermediate_size;
    const float eps = v_.layer_norm_eps;
    Activation patches = ops->Buffer(ActBuffer::kVisionPatches, n, v_.patch_dim());
    Activation x = ops->Buffer(ActBuffer::kVisionX, n, h);
    Activation t = ops->Buffer(ActBuffer::kVisionH, n, h);
    Activation qkv = ops->Buffer(ActBuffer::kVisionQkv, n, 3 * h);
    Activation attn = ops->Buffer(ActBuffer::kVisionAttn, n, h);
    Activation mlp = ops->Buffer(ActBuffer::kVisionMlp, n, ff);

    const std::vector<float> rows = ImagePatches(v_, pixels);
    ITE_RETURN_IF_ERROR(ops->UploadRows(rows.data(), patches));
    ITE_RETURN_IF_ERROR(ops->Linear(patches, patch_, x));
    ITE_RETURN_IF_ERROR(ops->AddTable(x, positions_));
    ITE_RETURN_IF_ERROR(ops->LayerNorm(x, pre_w_, pre_b_, eps, x));
    for (const VisionLayer& layer : layers_) {
      ITE_RETURN_IF_ERROR(ops->LayerNorm(x, layer.norm1_w, layer.norm1_b, eps, t));
      ITE_RETURN_IF_ERROR(ops->Linear(t, layer.qkv, qkv));
      ITE_RETURN_IF_ERROR(ops->DenseAttention(qkv, v_.num_heads, attn));
      ITE_RETURN_IF_ERROR(ops->Linear(attn, layer.o, t));
      ITE_RETURN_IF_ERROR(ops->Add(x, t));
      ITE_RETURN_IF_ERROR(ops->LayerNorm(x, layer.norm2_w, layer.norm2_b, eps, t));
      ITE_RETURN_IF_ERROR(ops->Linear(t, layer.fc1, mlp));
      ITE_RETURN_IF_ERROR(ops->Activate(mlp, v_.act));
      ITE_RETURN_IF_ERROR(ops->Linear(mlp, layer.fc2, t));
      ITE_RETURN_IF_ERROR(ops->Add(x, t));
    }
    return v_.drop_cls ? ops->Rows(x, 1, n - 1) : x;
  }

  Status Encode(ModelOps* ops, std::span<const float> pixels, Activation out) const override {
    if (out.rows != v_.image_tokens() || out.cols != text_hidden_)
      return InvalidArgument("image features go into [{}, {}], not [{}, {}]", v_.image_tokens(),
                             text_hidden_, out.rows, out.cols);
    ITE_ASSIGN_OR_RETURN(Activation features, Features(ops, pixels));
    Activation y = ops->Buffer(ActBuffer::kVisionProj, features.rows, text_hidden_);
    ITE_RETURN_IF_ERROR(ops->Linear(features, proj1_, y));
    ITE_RETURN_IF_ERROR(ops->Activate(y, v_.projector_act));
    return ops->Linear(y, proj2_, out);
  }

 private:
  VisionConfig v_;
  int32_t text_hidden_;
  OpWeight patch_, positions_, pre_w_, pre_b_;
  std::vector<VisionLayer> layers_;
  OpWeight proj1_, proj2_;
};

}  // namespace

std::vector<float> ImagePatches(const VisionConfig& v, std::span<const float> pixels) {
  const int32_t p = v.patch_size, side = v.patches_per_side(), size = v.image_size;
  const int32_t dim = v.patch_dim();
  std::vector<float> rows(static_cast<size_t>(v.num_positions()) * dim, 0.0f);
  for (int32_t py = 0; py < side; ++py) {
    for (int32_t px = 0; px < side; ++px) {
      float* row = &rows[static_cast<size_t>(1 + py * side + px) * dim];
      for (int32_t c = 0; c < v.num_channels; ++c) {
        for (int32_t ky = 0; ky < p; ++ky) {
          const float* src = &pixels[(static_cast<size_t>(c) * size + py * p + ky) * size + px * p];
          std::copy(src, src + p, row + (c * p + ky) * p);
        }
      }
    }
  }
  return rows;
}

StatusOr<std::unique_ptr<VisionModel>> CreateVisionModel(const ModelConfig& config,
                                                         const VisionWeights& weights,
                                                         ModelOps* ops) {
  if (!config.vision) return InvalidArgument("model has no vision tower");
  auto model = std::make_unique<ClipVisionModel>(*config.vision, config.hidden_size);
  ITE_RETURN_IF_ERROR(model->Load(weights, ops));
  return std::unique_ptr<VisionModel>(std::move(model));
}

}  // namespace ite

#include "worker/model/vision_weight_builder.h"

#include <fmt/ranges.h>

#include <cstring>

#include "worker/model/dequantize.h"

namespace ite {
namespace {

class VisionBuilder {
 public:
  VisionBuilder(const VisionConfig& c, int32_t text_hidden, const TensorSet& set, DType dtype)
      : c_(c), text_hidden_(text_hidden), set_(set), dtype_(dtype) {}

  StatusOr<VisionWeights> Build() {
    ITE_RETURN_IF_ERROR(FindPrefixes());
    const int64_t h = c_.hidden_size, ff = c_.intermediate_size, th = text_hidden_;
    const int64_t p = c_.patch_size, n_pos = c_.num_positions();
    VisionWeights w;
    ITE_ASSIGN_OR_RETURN(
        std::vector<float> patch,
        Read(tower_ + "embeddings.patch_embedding.weight", {h, c_.num_channels, p, p}));
    w.patch_embedding = Store({h, c_.patch_dim()}, patch);
    ITE_ASSIGN_OR_RETURN(std::vector<float> cls, Read(tower_ + "embeddings.class_embedding", {h}));
    ITE_ASSIGN_OR_RETURN(std::vector<float> pos,
                         Read(tower_ + "embeddings.position_embedding.weight", {n_pos, h}));
    for (int64_t i = 0; i < h; ++i) pos[i] += cls[i];
    w.position_table = Store({n_pos, h}, pos);
    ITE_ASSIGN_OR_RETURN(w.pre_norm_w, Single(tower_ + "pre_layrnorm.weight", {h}));
    ITE_ASSIGN_OR_RETURN(w.pre_norm_b, Single(tower_ + "pre_layrnorm.bias", {h}));
    for (int32_t l = 0; l < c_.feature_layers; ++l) {
      const std::string b = fmt::format("{}encoder.layers.{}.", tower_, l);
      VisionLayerWeights lw;
      ITE_ASSIGN_OR_RETURN(lw.norm1_w, Single(b + "layer_norm1.weight", {h}));
      ITE_ASSIGN_OR_RETURN(lw.norm1_b, Single(b + "layer_norm1.bias", {h}));
      std::vector<float> qkv, bqkv;
      for (const char* proj : {"q_proj", "k_proj", "v_proj"}) {
        ITE_ASSIGN_OR_RETURN(std::vector<float> m,
                             Read(b + "self_attn." + proj + ".weight", {h, h}));
        ITE_ASSIGN_OR_RETURN(std::vector<float> bias, Read(b + "self_attn." + proj + ".bias", {h}));
        qkv.insert(qkv.end(), m.begin(), m.end());
        bqkv.insert(bqkv.end(), bias.begin(), bias.end());
      }
      lw.wqkv = Store({3 * h, h}, qkv);
      lw.bqkv = Store({3 * h}, bqkv);
      ITE_ASSIGN_OR_RETURN(lw.wo, Single(b + "self_attn.out_proj.weight", {h, h}));
      ITE_ASSIGN_OR_RETURN(lw.bo, Single(b + "self_attn.out_proj.bias", {h}));
      ITE_ASSIGN_OR_RETURN(lw.norm2_w, Single(b + "layer_norm2.weight", {h}));
      ITE_ASSIGN_OR_RETURN(lw.norm2_b, Single(b + "layer_norm2.bias", {h}));
      ITE_ASSIGN_OR_RETURN(lw.fc1, Single(b + "mlp.fc1.weight", {ff, h}));
      ITE_ASSIGN_OR_RETURN(lw.b1, Single(b + "mlp.fc1.bias", {ff}));
      ITE_ASSIGN_OR_RETURN(lw.fc2, Single(b + "mlp.fc2.weight", {h, ff}));
      ITE_ASSIGN_OR_RETURN(lw.b2, Single(b + "mlp.fc2.bias", {h}));
      w.layers.push_back(std::move(lw));
    }
    ITE_ASSIGN_OR_RETURN(w.proj_w1, Single(projector_ + "linear_1.weight", {th, h}));
    ITE_ASSIGN_OR_RETURN(w.proj_w2, Single(projector_ + "linear_2.weight", {th, th}));
    if (c_.projector_bias) {
      ITE_ASSIGN_OR_RETURN(w.proj_b1, Single(projector_ + "linear_1.bias", {th}));
      ITE_ASSIGN_OR_RETURN(w.proj_b2, Single(projector_ + "linear_2.bias", {th}));
    }
    return w;
  }

 private:
  Status FindPrefixes() {
    const std::string probe = "embeddings.patch_embedding.weight";
    for (const char* p : {"vision_tower.vision_model.", "vision_tower.", "model.vision_tower.",
                          "model.vision_tower.vision_model."}) {
      if (set_.tensors.count(p + probe)) tower_ = p;
    }
    if (tower_.empty())
      return NotFound("{}: the vision tower is missing (no tensor 'vision_tower.{}')", set_.path,
                      probe);
    for (const char* p : {"multi_modal_projector.", "model.multi_modal_projector."}) {
      if (set_.tensors.count(std::string(p) + "linear_1.weight")) projector_ = p;
    }
    if (projector_.empty())
      return NotFound(
          "{}: the projector is missing (no tensor 'multi_modal_projector.linear_1."
          "weight')",
          set_.path);
    return Status::Ok();
  }

  StatusOr<std::vector<float>> Read(const std::string& name, const std::vector<int64_t>& shape) {
    auto it = set_.tensors.find(name);
    if (it == set_.tensors.end()) return NotFound("{}: tensor '{}' is missing", set_.path, name);
    const SourceTensor& t = it->second;
    if (t.shape != shape)
      return InvalidArgument("{}: tensor '{}' has shape [{}], the config implies [{}]", t.file,
                             name, fmt::join(t.shape, ", "), fmt::join(shape, ", "));
    if (!DequantizeSupported(t.type) || GgmlBlockSize(t.type) != 1)
      return Unimplemented("{}: tensor '{}' has type {}, which the vision loader cannot convert",
                           t.file, name, GgmlTypeName(t.type));
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    if (GgmlRowBytes(t.type, n) != t.nbytes)
      return InvalidArgument("{}: tensor '{}': {} bytes do not match shape [{}] of {}", t.file,
                             name, t.nbytes, fmt::join(shape, ", "), GgmlTypeName(t.type));
    std::vector<float> out(static_cast<size_t>(n));
    DequantizeRow(t.type, t.data, out.data(), n);
    return out;
  }

  Tensor Store(std::vector<int64_t> shape, const std::vector<float>& values) {
    void* out = nullptr;
    Tensor t = AllocTensor(dtype_, std::move(shape), &out);
    switch (dtype_) {
      case DType::kF32:
        std::memcpy(out, values.data(), values.size() * sizeof(float));
        break;
      case DType::kF16:
        for (size_t i = 0; i < values.size(); ++i)
          static_cast<uint16_t*>(out)[i] = FloatToHalf(values[i]);
        break;
      case DType::kBF16:
        for (size_t i = 0; i < values.size(); ++i)
          static_cast<uint16_t*>(out)[i] = FloatToBf16(values[i]);
        break;
      default:  // block formats: never asked (the loader passes the activation dtype)
        break;
    }
    return t;
  }

  StatusOr<Tensor> Single(const std::string& name, std::vector<int64_t> shape) {
    ITE_ASSIGN_OR_RETURN(std::vector<float> values, Read(name, shape));
    return Store(std::move(shape), values);
  }

  const VisionConfig& c_;
  int32_t text_hidden_;
  const TensorSet& set_;
  DType dtype_;
  std::string tower_, projector_;
};

}  // namespace

StatusOr<VisionWeights> BuildVisionWeights(const VisionConfig& config, int32_t text_hidden,
                                           const TensorSet& set, DType dtype) {
  return VisionBuilder(config, text_hidden, set, dtype).Build();
}

}  // namespace ite

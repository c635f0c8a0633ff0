#include "worker/model/model_loader.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/gguf_reader.h"
#include "worker/model/config_parser.h"
#include "worker/model/safetensors_file.h"
#include "worker/model/tensor_parallel.h"
#include "worker/model/vision_weight_builder.h"
#include "worker/model/weight_builder.h"

namespace ite {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string GgufName(WeightKind kind, int l) {
  const std::string b = fmt::format("blk.{}.", l);
  switch (kind) {
    case WeightKind::kEmbedding:
      return "token_embd.weight";
    case WeightKind::kAttnNorm:
      return b + "attn_norm.weight";
    case WeightKind::kQ:
      return b + "attn_q.weight";
    case WeightKind::kK:
      return b + "attn_k.weight";
    case WeightKind::kV:
      return b + "attn_v.weight";
    case WeightKind::kQBias:
      return b + "attn_q.bias";
    case WeightKind::kKBias:
      return b + "attn_k.bias";
    case WeightKind::kVBias:
      return b + "attn_v.bias";
    case WeightKind::kO:
      return b + "attn_output.weight";
    case WeightKind::kFfnNorm:
      return b + "ffn_norm.weight";
    case WeightKind::kGate:
      return b + "ffn_gate.weight";
    case WeightKind::kUp:
      return b + "ffn_up.weight";
    case WeightKind::kDown:
      return b + "ffn_down.weight";
    case WeightKind::kFinalNorm:
      return "output_norm.weight";
    case WeightKind::kLmHead:
      return "output.weight";
  }
  return "?";
}

std::string HfName(WeightKind kind, int l) {
  const std::string b = fmt::format("model.layers.{}.", l);
  switch (kind) {
    case WeightKind::kEmbedding:
      return "model.embed_tokens.weight";
    case WeightKind::kAttnNorm:
      return b + "input_layernorm.weight";
    case WeightKind::kQ:
      return b + "self_attn.q_proj.weight";
    case WeightKind::kK:
      return b + "self_attn.k_proj.weight";
    case WeightKind::kV:
      return b + "self_attn.v_proj.weight";
    case WeightKind::kQBias:
      return b + "self_attn.q_proj.bias";
    case WeightKind::kKBias:
      return b + "self_attn.k_proj.bias";
    case WeightKind::kVBias:
      return b + "self_attn.v_proj.bias";
    case WeightKind::kO:
      return b + "self_attn.o_proj.weight";
    case WeightKind::kFfnNorm:
      return b + "post_attention_layernorm.weight";
    case WeightKind::kGate:
      return b + "mlp.gate_proj.weight";
    case WeightKind::kUp:
      return b + "mlp.up_proj.weight";
    case WeightKind::kDown:
      return b + "mlp.down_proj.weight";
    case WeightKind::kFinalNorm:
      return "model.norm.weight";
    case WeightKind::kLmHead:
      return "lm_head.weight";
  }
  return "?";
}

}  // namespace

namespace {

BuildOptions ToBuildOptions(const LoadOptions& o) {
  BuildOptions b;
  b.dtype = o.dtype;
  b.show_progress = o.show_progress;
  b.progress_interval_s = o.progress_interval_s;
  b.keep_stored = o.keep_stored;
  b.tp_rank = o.tp_rank;
  b.tp_size = o.tp_size;
  return b;
}

// The whole model's config becomes the rank's once its share of the weights is built.
Status ShardLoadedConfig(const LoadOptions& o, ModelConfig* config) {
  if (o.tp_size == 1) return Status::Ok();
  ITE_ASSIGN_OR_RETURN(ShardPlan plan, PlanShard(*config, o.tp_rank, o.tp_size));
  *config = ShardConfig(*config, plan);
  return Status::Ok();
}

}  // namespace

StatusOr<LoadedModel> LoadModelFromGguf(const GgufFile& file, const LoadOptions& options) {
  const std::string& path = file.path();
  ITE_ASSIGN_OR_RETURN(ModelConfig config, ConfigFromGguf(file));
  config.tie_embeddings = file.FindTensor("output.weight") == nullptr;
  TensorSet set;
  set.path = path;
  set.name_of = GgufName;
  set.qk_interleaved = config.arch == ModelArch::kLlama;
  std::shared_ptr<const void> owner = file.mapping();
  for (const GgufTensorInfo& t : file.tensors()) {
    SourceTensor s;
    s.name = t.name;
    s.file = path;
    s.type = t.type;
    s.shape.assign(t.dims.rbegin(), t.dims.rend());  // GGUF lists ne0 (the row length) first
    s.data = t.data;
    s.nbytes = t.nbytes;
    s.owner = owner;
    set.tensors.emplace(t.name, std::move(s));
  }
  LoadedModel model;
  ITE_ASSIGN_OR_RETURN(model.weights, BuildWeights(config, set, ToBuildOptions(options)));
  ITE_RETURN_IF_ERROR(ShardLoadedConfig(options, &config));
  model.config = std::move(config);
  model.path = path;
  model.format = "gguf";
  return model;
}

namespace {

StatusOr<json> ReadJson(const fs::path& path, bool required) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    if (!required) return json();
    return NotFound("{}: file is missing", path.string());
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot read {}", path.string());
  std::stringstream buf;
  buf << in.rdbuf();
  json j = json::parse(buf.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument("{}: not valid JSON", path.string());
  return j;
}

// Shard file names from model.safetensors.index.json's weight_map, checked to stay inside the
// folder.
StatusOr<std::vector<std::string>> ShardNames(const json& index, const std::string& index_path) {
  auto map = index.find("weight_map");
  if (!index.is_object() || map == index.end() || !map->is_object()) {
    return InvalidArgument("{}: missing object 'weight_map'", index_path);
  }
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : map->items()) {
    if (!shard.is_string()) {
      return InvalidArgument("{}: weight_map['{}'] is not a file name", index_path, tensor);
    }
    std::string name = shard.get<std::string>();
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
      return InvalidArgument("{}: weight_map['{}'] = '{}' is not a plain file name", index_path,
                             tensor, name);
    }
    shards.insert(name);
  }
  return std::vector<std::string>(shards.begin(), shards.end());
}

// LLaVA checkpoints keep the language model under "language_model." (the layout transformers
// writes and the llava-hf releases use) or "model.language_model." (transformers 5 in memory).
Status UseLlavaTextNames(TensorSet* set) {
  if (set->tensors.count("language_model.model.embed_tokens.weight")) {
    set->name_of = [](WeightKind kind, int l) { return "language_model." + HfName(kind, l); };
  } else if (set->tensors.count("model.language_model.embed_tokens.weight")) {
    set->name_of = [](WeightKind kind, int l) {
      std::string name = HfName(kind, l);
      if (name.rfind("model.", 0) == 0) name.insert(6, "language_model.");
      return name;
    };
  } else {
    return NotFound(
        "{}: the language model is missing (no tensor "
        "'language_model.model.embed_tokens.weight')",
        set->path);
  }
  return Status::Ok();
}

StatusOr<LoadedModel> LoadHfFolder(const std::string& dir, const LoadOptions& options) {
  const fs::path root(dir);
  ITE_ASSIGN_OR_RETURN(json config_json, ReadJson(root / "config.json", true));
  ITE_ASSIGN_OR_RETURN(json generation, ReadJson(root / "generation_config.json", false));
  ITE_ASSIGN_OR_RETURN(ModelConfig config,
                       ConfigFromHfJson(config_json, generation, (root / "config.json").string()));
  if (config.name.empty() || config.name == ".") config.name = root.filename().string();

  std::vector<std::string> shards;
  std::error_code ec;
  const fs::path index_path = root / "model.safetensors.index.json";
  json index;
  if (fs::exists(index_path, ec)) {
    ITE_ASSIGN_OR_RETURN(index, ReadJson(index_path, true));
    ITE_ASSIGN_OR_RETURN(shards, ShardNames(index, index_path.string()));
  } else if (fs::exists(root / "model.safetensors", ec)) {
    shards.push_back("model.safetensors");
  } else {
    return NotFound("{}: no model.safetensors or model.safetensors.index.json", dir);
  }

  TensorSet set;
  set.path = dir;
  set.name_of = HfName;
  for (const std::string& shard : shards) {
    const std::string shard_path = (root / shard).string();
    ITE_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(shard_path));
    std::shared_ptr<const void> owner = file->mapping();
    for (const SafetensorsTensor& t : file->tensors()) {
      SourceTensor s{t.name, shard_path, t.type, t.shape, t.data, t.nbytes, owner};
      if (!set.tensors.emplace(t.name, std::move(s)).second) {
        return InvalidArgument("{}: tensor '{}' appears in more than one shard", shard_path,
                               t.name);
      }
    }
  }
  if (!index.is_null()) {
    // The index promises where each tensor lives; a shard that lacks it means a broken download.
    for (const auto& [tensor, shard] : index["weight_map"].items()) {
      auto it = set.tensors.find(tensor);
      if (it == set.tensors.end() ||
          fs::path(it->second.file).filename() != shard.get<std::string>()) {
        return NotFound("{}: tensor '{}' listed in the index is not in {}", index_path.string(),
                        tensor, shard.get<std::string>());
      }
    }
  }
  if (config.vision) ITE_RETURN_IF_ERROR(UseLlavaTextNames(&set));
  LoadedModel model;
  ITE_ASSIGN_OR_RETURN(model.weights, BuildWeights(config, set, ToBuildOptions(options)));
  ITE_RETURN_IF_ERROR(ShardLoadedConfig(options, &config));
  if (config.vision) {
    ITE_ASSIGN_OR_RETURN(
        model.weights.vision,
        BuildVisionWeights(*config.vision, config.hidden_size, set,
                           DTypeQuantized(options.dtype) ? DType::kF32 : options.dtype));
  }
  model.config = std::move(config);
  model.path = dir;
  model.format = "safetensors";
  return model;
}

}  // namespace

StatusOr<LoadOptions> LoadOptionsForDType(const std::string& dtype, const std::string& device) {
  const bool cuda = device == "cuda";
  if (!cuda && device != "cpu") return InvalidArgument("device {}: cpu or cuda", device);
  LoadOptions o;
  if (dtype == "auto") {
    o.dtype = cuda ? DType::kBF16 : DType::kF32;
    o.keep_stored = !cuda;
  } else if (dtype == "f32" && !cuda) {
    o.dtype = DType::kF32;
  } else if (dtype == "bf16") {
    o.dtype = DType::kBF16;
  } else if (dtype == "f16" && cuda) {
    o.dtype = DType::kF16;
  } else if (dtype == "q8_0" && !cuda) {
    o.dtype = DType::kQ8_0;  // every matrix re-quantized (from F32/F16/BF16 or a block format)
  } else {
    return InvalidArgument("--dtype {}: {} takes auto, {}", dtype, device,
                           cuda ? "bf16 or f16" : "f32, bf16 or q8_0");
  }
  return o;
}

StatusOr<LoadedModel> LoadModel(const std::string& path, const LoadOptions& options) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return LoadHfFolder(path, options);
  if (!fs::exists(path, ec)) return NotFound("model path {} does not exist", path);
  ITE_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
  return LoadModelFromGguf(*file, options);
}

}  // namespace ite

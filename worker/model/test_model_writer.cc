#include "worker/model/test_model_writer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "common/check.h"
#include "common/gguf_reader.h"
#include "common/gguf_test_writer.h"
#include "worker/model/dequantize.h"

namespace ite::testing {

namespace {

HostTensor RandomTensor(std::vector<int64_t> shape, std::mt19937* rng, float scale,
                        float offset = 0.0f) {
  HostTensor t;
  t.shape = std::move(shape);
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  std::uniform_real_distribution<float> dist(-scale, scale);
  t.values.resize(static_cast<size_t>(n));
  for (float& v : t.values) v = offset + dist(*rng);
  return t;
}

// Q5_0 {f16 d; qh[4]; qs[16]} per 32 values: d = (the value of largest magnitude) / -16,
// q = round(x / d) + 16 in [0, 31]; element j's low four bits in qs[j % 16] (high nibble for
// j >= 16), its fifth bit as bit j of qh.
void QuantizeBlockQ5_0(const float* x, uint8_t* out) {
  float peak = 0.0f;
  for (int j = 0; j < 32; ++j) {
    if (std::fabs(x[j]) > std::fabs(peak)) peak = x[j];
  }
  const float d = peak / -16.0f;
  const float inv = d != 0.0f ? 1.0f / d : 0.0f;
  const uint16_t dh = FloatToHalf(d);
  std::memcpy(out, &dh, 2);
  uint32_t qh = 0;
  uint8_t* qs = out + 6;
  std::memset(qs, 0, 16);
  for (int j = 0; j < 32; ++j) {
    const int q = std::clamp(static_cast<int>(std::lround(x[j] * inv)) + 16, 0, 31);
    qs[j % 16] |= static_cast<uint8_t>((q & 0xF) << (j < 16 ? 0 : 4));
    qh |= static_cast<uint32_t>(q >> 4) << j;
  }
  std::memcpy(out + 2, &qh, 4);
}

// Rows of `v` (each a whole number of 32-value blocks) in a block format.
std::string EncodeBlocks(const std::vector<float>& v, GgmlType type) {
  const size_t blocks = v.size() / 32;
  std::string out(GgmlRowBytes(type, static_cast<int64_t>(v.size())), '\0');
  auto* dst = reinterpret_cast<uint8_t*>(out.data());
  if (type == GgmlType::Q8_0) {
    QuantizeRowQ8_0(v.data(), dst, static_cast<int64_t>(v.size()));
  } else if (type == GgmlType::Q5_0) {
    for (size_t b = 0; b < blocks; ++b) QuantizeBlockQ5_0(v.data() + 32 * b, dst + 22 * b);
  } else {
    ITE_CHECK(false, "BuildGguf: no encoder for {}", GgmlTypeName(type));
  }
  return out;
}

std::string Encode(const std::vector<float>& v, const std::string& dtype) {
  std::string out;
  if (dtype == "F32") {
    out.assign(reinterpret_cast<const char*>(v.data()), v.size() * 4);
    return out;
  }
  out.resize(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t h = dtype == "F16" ? FloatToHalf(v[i]) : FloatToBf16(v[i]);
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

// llama.cpp's convert_hf_to_gguf permutation of Q/K rows: within each head, HF row s*half + j
// goes to row 2*j + s.
std::vector<float> PermuteQk(const HostTensor& t, int64_t head_dim) {
  const int64_t rows = t.shape[0], cols = t.shape[1], half = head_dim / 2;
  std::vector<float> out(t.values.size());
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t head = r / head_dim, s = (r % head_dim) / half, j = r % half;
    const int64_t dst = head * head_dim + 2 * j + s;
    std::copy_n(t.values.begin() + r * cols, cols, out.begin() + dst * cols);
  }
  return out;
}

}  // namespace

TinyModel MakeTinyModel(ModelArch arch, bool tied, uint32_t seed) {
  ModelConfig c;
  c.arch = arch;
  c.name = "tiny";
  c.vocab_size = 64;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.max_position = 256;
  c.tie_embeddings = tied;
  c.qkv_bias = arch == ModelArch::kQwen2;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return MakeTinyModel(c, seed);
}

TinyModel MakeTinyModel(const ModelConfig& config, uint32_t seed) {
  TinyModel m;
  m.config = config;
  const ModelConfig& c = m.config;
  std::mt19937 rng(seed);
  const int64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), ff = c.intermediate_size;
  m.tensors["model.embed_tokens.weight"] = RandomTensor({c.vocab_size, h}, &rng, 1.0f);
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    m.tensors[p + "input_layernorm.weight"] = RandomTensor({h}, &rng, 0.1f, 1.0f);
    m.tensors[p + "self_attn.q_proj.weight"] = RandomTensor({q, h}, &rng, 0.2f);
    m.tensors[p + "self_attn.k_proj.weight"] = RandomTensor({kv, h}, &rng, 0.2f);
    m.tensors[p + "self_attn.v_proj.weight"] = RandomTensor({kv, h}, &rng, 0.2f);
    if (c.qkv_bias) {
      m.tensors[p + "self_attn.q_proj.bias"] = RandomTensor({q}, &rng, 0.2f);
      m.tensors[p + "self_attn.k_proj.bias"] = RandomTensor({kv}, &rng, 0.2f);
      m.tensors[p + "self_attn.v_proj.bias"] = RandomTensor({kv}, &rng, 0.2f);
    }
    m.tensors[p + "self_attn.o_proj.weight"] = RandomTensor({h, q}, &rng, 0.2f);
    m.tensors[p + "post_attention_layernorm.weight"] = RandomTensor({h}, &rng, 0.1f, 1.0f);
    m.tensors[p + "mlp.gate_proj.weight"] = RandomTensor({ff, h}, &rng, 0.2f);
    m.tensors[p + "mlp.up_proj.weight"] = RandomTensor({ff, h}, &rng, 0.2f);
    m.tensors[p + "mlp.down_proj.weight"] = RandomTensor({h, ff}, &rng, 0.2f);
  }
  m.tensors["model.norm.weight"] = RandomTensor({h}, &rng, 0.1f, 1.0f);
  if (!c.tie_embeddings) m.tensors["lm_head.weight"] = RandomTensor({c.vocab_size, h}, &rng, 1.0f);
  return m;
}

std::string BuildSafetensors(const std::map<std::string, SafetensorsEntry>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  std::string data;
  for (const auto& [name, e] : tensors) {
    header[name] = {{"dtype", e.dtype},
                    {"shape", e.shape},
                    {"data_offsets", {data.size(), data.size() + e.bytes.size()}}};
    data += e.bytes;
  }
  std::string text = header.dump();
  const uint64_t len = text.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &len, 8);
  return out + text + data;
}

void WriteHfFolder(const TinyModel& model, const std::string& dir, const std::string& dtype,
                   bool sharded) {
  std::filesystem::create_directories(dir);
  const ModelConfig& c = model.config;
  nlohmann::json cfg = {
      {"architectures", {c.arch == ModelArch::kQwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
      {"model_type", c.arch == ModelArch::kQwen2 ? "qwen2" : "llama"},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_layers},
      {"num_attention_heads", c.num_heads},
      {"num_key_value_heads", c.num_kv_heads},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"max_position_embeddings", c.max_position},
      {"tie_word_embeddings", c.tie_embeddings},
      {"vocab_size", c.vocab_size},
      {"bos_token_id", c.bos_token_id},
      {"eos_token_id", c.eos_token_ids[0]},
      {"torch_dtype", "float32"}};
  std::ofstream(dir + "/config.json") << cfg.dump(2);
  std::map<std::string, SafetensorsEntry> shard[2];
  nlohmann::json weight_map = nlohmann::json::object();
  int i = 0;
  for (const auto& [name, t] : model.tensors) {
    const int s = sharded ? (i++ % 2) : 0;
    shard[s][name] = {dtype, t.shape, Encode(t.values, dtype)};
    weight_map[name] = "model-0000" + std::to_string(s + 1) + "-of-00002.safetensors";
  }
  auto write = [](const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
  };
  if (!sharded) {
    write(dir + "/model.safetensors", BuildSafetensors(shard[0]));
    return;
  }
  for (int s = 0; s < 2; ++s) {
    write(dir + "/model-0000" + std::to_string(s + 1) + "-of-00002.safetensors",
          BuildSafetensors(shard[s]));
  }
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
  std::ofstream(dir + "/model.safetensors.index.json") << index.dump(2);
}

std::string GgufNameOf(const std::string& hf) {
  static const std::vector<std::pair<std::string, std::string>> kLayer = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"}};
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const std::string prefix = "model.layers.";
  size_t dot = hf.find('.', prefix.size());
  const std::string layer = hf.substr(prefix.size(), dot - prefix.size());
  const std::string rest = hf.substr(dot + 1);
  for (const auto& [from, to] : kLayer) {
    if (rest == from) return "blk." + layer + "." + to;
  }
  return hf;
}

std::string BuildGguf(const TinyModel& model, const std::vector<float>& rope_freqs,
                      const GgufTypes& types) {
  const ModelConfig& c = model.config;
  const std::string arch = c.arch == ModelArch::kQwen2 ? "qwen2" : "llama";
  GgufTestWriter w;
  w.AddString("general.architecture", arch);
  w.AddString("general.name", "tiny");
  w.AddU32(arch + ".block_count", c.num_layers);
  w.AddU32(arch + ".context_length", c.max_position);
  w.AddU32(arch + ".embedding_length", c.hidden_size);
  w.AddU32(arch + ".feed_forward_length", c.intermediate_size);
  w.AddU32(arch + ".attention.head_count", c.num_heads);
  w.AddU32(arch + ".attention.head_count_kv", c.num_kv_heads);
  w.AddF32(arch + ".attention.layer_norm_rms_epsilon", c.rms_norm_eps);
  w.AddF32(arch + ".rope.freq_base", c.rope_theta);
  w.AddU32(arch + ".rope.dimension_count", c.head_dim);
  std::vector<std::string> tokens;
  for (int i = 0; i < c.vocab_size; ++i) tokens.push_back("t" + std::to_string(i));
  w.AddStringArray("tokenizer.ggml.tokens", tokens);
  w.AddU32("tokenizer.ggml.bos_token_id", c.bos_token_id);
  w.AddU32("tokenizer.ggml.eos_token_id", c.eos_token_ids[0]);
  for (const auto& [name, t] : model.tensors) {
    std::vector<float> values = t.values;
    const bool permute =
        c.arch == ModelArch::kLlama && t.shape.size() == 2 &&
        (name.find("q_proj") != std::string::npos || name.find("k_proj") != std::string::npos);
    if (permute) values = PermuteQk(t, c.head_dim);
    std::vector<uint64_t> dims(t.shape.rbegin(), t.shape.rend());
    const auto type = types.find(name);
    if (type == types.end()) {
      w.AddTensor(GgufNameOf(name), static_cast<uint32_t>(GgmlType::F32), dims,
                  GgufTestWriter::F32Bytes(values));
    } else {
      w.AddTensor(GgufNameOf(name), static_cast<uint32_t>(type->second), dims,
                  EncodeBlocks(values, type->second));
    }
  }
  if (!rope_freqs.empty()) {
    w.AddTensor("rope_freqs.weight", static_cast<uint32_t>(GgmlType::F32),
                {uint64_t{rope_freqs.size()}}, GgufTestWriter::F32Bytes(rope_freqs));
  }
  return w.Build();
}

}  // namespace ite::testing

// Loader tests on tiny generated models: GGUF and Hugging Face folders of the same weights must
// load to the same fused tensors (model_weights.h layouts), in every output dtype.
#include "worker/model/model_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/gguf_test_writer.h"
#include "worker/model/dequantize.h"
#include "worker/model/model.h"
#include "worker/model/test_model_writer.h"

namespace ite {
namespace {

namespace fs = std::filesystem;
using testing::HostTensor;
using testing::TinyModel;

// Directories made by TempDir, removed when the test program ends.
class TempDirCleanup : public ::testing::Environment {
 public:
  static std::vector<fs::path>& Dirs() {
    static std::vector<fs::path> dirs;
    return dirs;
  }
  void TearDown() override {
    std::error_code ec;
    for (const fs::path& d : Dirs()) fs::remove_all(d, ec);
  }
};
const auto* const kCleanup = ::testing::AddGlobalTestEnvironment(new TempDirCleanup);

fs::path TempDir(const std::string& name) {
  // Per process: ctest -j runs test cases (separate processes) concurrently.
  fs::path p =
      fs::temp_directory_path() / ("ite_loader_test_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  TempDirCleanup::Dirs().push_back(p);
  return p;
}

float ReadElement(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::kF32:
      return t.as<float>()[i];
    case DType::kF16:
      return HalfToFloat(t.as<uint16_t>()[i]);
    case DType::kBF16:
      return Bf16ToFloat(t.as<uint16_t>()[i]);
    default:  // block formats are not read element by element
      break;
  }
  return NAN;
}

// What a stored float becomes after the round trip through `dtype`.
float Rounded(float v, DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return v;
    case DType::kF16:
      return HalfToFloat(FloatToHalf(v));
    case DType::kBF16:
      return Bf16ToFloat(FloatToBf16(v));
    default:
      break;
  }
  return NAN;
}

// Checks `t` equals the row-wise concatenation of `parts`, each rounded to t.dtype (and first to
// `storage`, the dtype the file held them in).
void ExpectFused(const Tensor& t, const std::vector<const HostTensor*>& parts, DType storage,
                 const std::string& what) {
  std::vector<float> want;
  for (const HostTensor* p : parts) want.insert(want.end(), p->values.begin(), p->values.end());
  ASSERT_EQ(t.numel(), static_cast<int64_t>(want.size())) << what;
  ASSERT_FALSE(t.empty()) << what;
  if (t.dtype == DType::kQ8_0) {  // re-quantized: each row the Q8_0 encoding of the stored row
    const int64_t cols = t.cols();
    const size_t row_bytes = DTypeRowBytes(DType::kQ8_0, cols);
    std::vector<float> row(static_cast<size_t>(cols));
    std::vector<uint8_t> blocks(row_bytes);
    for (int64_t r = 0; r < t.numel() / cols; ++r) {
      for (int64_t i = 0; i < cols; ++i) row[i] = Rounded(want[r * cols + i], storage);
      QuantizeRowQ8_0(row.data(), blocks.data(), cols);
      ASSERT_EQ(std::memcmp(t.row(r), blocks.data(), row_bytes), 0) << what << " row " << r;
    }
    return;
  }
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(ReadElement(t, static_cast<int64_t>(i)), Rounded(Rounded(want[i], storage), t.dtype))
        << what << " element " << i;
  }
}

void ExpectModel(const LoadedModel& m, const TinyModel& ref, DType storage) {
  const ModelConfig& c = ref.config;
  EXPECT_EQ(m.config.vocab_size, c.vocab_size);
  EXPECT_EQ(m.config.hidden_size, c.hidden_size);
  EXPECT_EQ(m.config.intermediate_size, c.intermediate_size);
  EXPECT_EQ(m.config.num_layers, c.num_layers);
  EXPECT_EQ(m.config.num_heads, c.num_heads);
  EXPECT_EQ(m.config.num_kv_heads, c.num_kv_heads);
  EXPECT_EQ(m.config.head_dim, c.head_dim);
  EXPECT_FLOAT_EQ(m.config.rms_norm_eps, c.rms_norm_eps);
  EXPECT_FLOAT_EQ(m.config.rope_theta, c.rope_theta);
  EXPECT_EQ(m.config.max_position, c.max_position);
  EXPECT_EQ(m.config.tie_embeddings, c.tie_embeddings);
  EXPECT_EQ(m.config.qkv_bias, c.qkv_bias);
  EXPECT_EQ(m.config.bos_token_id, c.bos_token_id);
  EXPECT_EQ(m.config.eos_token_ids, c.eos_token_ids);
  const auto& t = ref.tensors;
  const ModelWeights& w = m.weights;
  EXPECT_EQ(w.token_embedding.shape, (std::vector<int64_t>{c.vocab_size, c.hidden_size}));
  ExpectFused(w.token_embedding, {&t.at("model.embed_tokens.weight")}, storage, "embedding");
  ASSERT_EQ(w.layers.size(), static_cast<size_t>(c.num_layers));
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const LayerWeights& L = w.layers[l];
    ExpectFused(L.attn_norm, {&t.at(p + "input_layernorm.weight")}, storage, p + "attn_norm");
    EXPECT_EQ(L.wqkv.shape, (std::vector<int64_t>{c.qkv_dim(), c.hidden_size}));
    ExpectFused(L.wqkv,
                {&t.at(p + "self_attn.q_proj.weight"), &t.at(p + "self_attn.k_proj.weight"),
                 &t.at(p + "self_attn.v_proj.weight")},
                storage, p + "wqkv");
    if (c.qkv_bias) {
      ExpectFused(L.bqkv,
                  {&t.at(p + "self_attn.q_proj.bias"), &t.at(p + "self_attn.k_proj.bias"),
                   &t.at(p + "self_attn.v_proj.bias")},
                  storage, p + "bqkv");
    } else {
      EXPECT_TRUE(L.bqkv.empty());
    }
    ExpectFused(L.wo, {&t.at(p + "self_attn.o_proj.weight")}, storage, p + "wo");
    EXPECT_EQ(L.wo.shape, (std::vector<int64_t>{c.hidden_size, c.q_dim()}));
    ExpectFused(L.ffn_norm, {&t.at(p + "post_attention_layernorm.weight")}, storage,
                p + "ffn_norm");
    EXPECT_EQ(L.w_gate_up.shape, (std::vector<int64_t>{2 * c.intermediate_size, c.hidden_size}));
    ExpectFused(L.w_gate_up, {&t.at(p + "mlp.gate_proj.weight"), &t.at(p + "mlp.up_proj.weight")},
                storage, p + "w_gate_up");
    ExpectFused(L.w_down, {&t.at(p + "mlp.down_proj.weight")}, storage, p + "w_down");
  }
  ExpectFused(w.final_norm, {&t.at("model.norm.weight")}, storage, "final_norm");
  if (c.tie_embeddings) {
    EXPECT_EQ(w.lm_head.data, w.token_embedding.data);
  } else {
    ExpectFused(w.lm_head, {&t.at("lm_head.weight")}, storage, "lm_head");
  }
}

struct Case {
  ModelArch arch;
  bool tied;
  DType out;
};

std::string ArchName(ModelArch a) { return a == ModelArch::kQwen2 ? "Qwen2" : "Llama"; }

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  return ArchName(info.param.arch) + (info.param.tied ? "Tied" : "Untied") + "To" +
         DTypeName(info.param.out);
}

class GgufLoadTest : public ::testing::TestWithParam<Case> {};

TEST_P(GgufLoadTest, MatchesHfWeightsAfterUndoingThePermutation) {
  const Case c = GetParam();
  TinyModel ref = testing::MakeTinyModel(c.arch, c.tied);
  fs::path dir = TempDir("gguf");
  const std::string path = (dir / "tiny.gguf").string();
  testing::GgufTestWriter::WriteFile(path, testing::BuildGguf(ref));
  auto m = LoadModel(path, {c.out, false});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->format, "gguf");
  EXPECT_EQ(m->config.name, "tiny");
  ExpectModel(*m, ref, DType::kF32);
  if (c.out == DType::kF32) {
    // F32 tensors that need no conversion stay in the file mapping.
    EXPECT_EQ(m->weights.layers[0].attn_norm.owner, m->weights.token_embedding.owner);
    EXPECT_NE(m->weights.layers[0].wqkv.owner, m->weights.token_embedding.owner);
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, GgufLoadTest,
                         ::testing::Values(Case{ModelArch::kLlama, false, DType::kF32},
                                           Case{ModelArch::kLlama, true, DType::kF32},
                                           Case{ModelArch::kLlama, true, DType::kBF16},
                                           Case{ModelArch::kLlama, false, DType::kF16},
                                           Case{ModelArch::kQwen2, false, DType::kF32},
                                           Case{ModelArch::kQwen2, true, DType::kBF16},
                                           Case{ModelArch::kLlama, false, DType::kQ8_0},
                                           Case{ModelArch::kQwen2, true, DType::kQ8_0}),
                         CaseName);

struct HfCase {
  ModelArch arch;
  std::string storage;
  bool sharded;
  DType out;
};

std::string HfCaseName(const ::testing::TestParamInfo<HfCase>& info) {
  return ArchName(info.param.arch) + info.param.storage +
         (info.param.sharded ? "ShardedTied" : "Single") + "To" + DTypeName(info.param.out);
}

class HfLoadTest : public ::testing::TestWithParam<HfCase> {};

TEST_P(HfLoadTest, LoadsFolder) {
  const HfCase c = GetParam();
  TinyModel ref = testing::MakeTinyModel(c.arch, /*tied=*/c.sharded);
  fs::path dir = TempDir("hf");
  testing::WriteHfFolder(ref, dir.string(), c.storage, c.sharded);
  auto m = LoadModel(dir.string(), {c.out, false});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->format, "safetensors");
  const DType storage = c.storage == "F32"   ? DType::kF32
                        : c.storage == "F16" ? DType::kF16
                                             : DType::kBF16;
  ExpectModel(*m, ref, storage);
}

INSTANTIATE_TEST_SUITE_P(Variants, HfLoadTest,
                         ::testing::Values(HfCase{ModelArch::kLlama, "F32", false, DType::kF32},
                                           HfCase{ModelArch::kLlama, "BF16", true, DType::kF32},
                                           HfCase{ModelArch::kLlama, "BF16", false, DType::kBF16},
                                           HfCase{ModelArch::kLlama, "F16", false, DType::kF16},
                                           HfCase{ModelArch::kLlama, "F16", true, DType::kBF16},
                                           HfCase{ModelArch::kQwen2, "BF16", false, DType::kF32},
                                           HfCase{ModelArch::kQwen2, "F32", true, DType::kF16},
                                           HfCase{ModelArch::kLlama, "BF16", false, DType::kQ8_0},
                                           HfCase{ModelArch::kQwen2, "F16", true, DType::kQ8_0}),
                         HfCaseName);

TEST(HfConfigTest, ReadsRopeScalingAndGenerationEos) {
  TinyModel ref = testing::MakeTinyModel(ModelArch::kLlama, true);
  fs::path dir = TempDir("hf_rope");
  testing::WriteHfFolder(ref, dir.string(), "BF16", false);
  nlohmann::json cfg;
  std::ifstream(dir / "config.json") >> cfg;
  cfg["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", 32.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8192}};
  cfg["eos_token_id"] = {2, 5};
  cfg["head_dim"] = 16;
  std::ofstream(dir / "config.json") << cfg.dump();
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": [7, 8, 9]})";
  auto m = LoadModel(dir.string(), {});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->config.rope_scaling.type, "llama3");
  EXPECT_FLOAT_EQ(m->config.rope_scaling.factor, 32.0f);
  EXPECT_FLOAT_EQ(m->config.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(m->config.rope_scaling.original_max_position, 8192);
  EXPECT_EQ(m->config.eos_token_ids, (std::vector<int32_t>{7, 8, 9}));
}

// Llama 3 scaling as transformers computes it (rope_init_fn "llama3"): the ratio of the unscaled
// to the scaled inverse frequency, which is what llama.cpp stores in rope_freqs.weight.
std::vector<float> Llama3Divisors(const ModelConfig& c, double factor, double low, double high,
                                  double orig) {
  std::vector<float> out;
  for (int i = 0; i < c.head_dim / 2; ++i) {
    const double inv = std::pow(c.rope_theta, -2.0 * i / c.head_dim);
    const double wavelen = 2 * M_PI / inv;
    double scaled = wavelen > orig / low ? inv / factor : inv;
    const double smooth = (orig / wavelen - low) / (high - low);
    const bool medium = !(wavelen < orig / high) && !(wavelen > orig / low);
    if (medium) scaled = (1 - smooth) * scaled / factor + smooth * scaled;
    out.push_back(static_cast<float>(inv / scaled));
  }
  return out;
}

TEST(GgufConfigTest, RopeFreqsTensorBecomesLlama3Scaling) {
  TinyModel ref = testing::MakeTinyModel(ModelArch::kLlama, true);
  fs::path dir = TempDir("rope_freqs");
  const std::vector<float> divisors = Llama3Divisors(ref.config, 32.0, 1.0, 4.0, 8192.0);
  // The tiny model's frequencies cover all three regions: unscaled, smoothed, fully scaled.
  EXPECT_EQ(divisors.front(), 1.0f);
  EXPECT_EQ(divisors.back(), 32.0f);
  EXPECT_GT(divisors[6], 1.0f);
  EXPECT_LT(divisors[6], 32.0f);
  testing::GgufTestWriter::WriteFile((dir / "a.gguf").string(), testing::BuildGguf(ref, divisors));
  auto m = LoadModel((dir / "a.gguf").string(), {});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->config.rope_scaling.type, "llama3");
  EXPECT_FLOAT_EQ(m->config.rope_scaling.factor, 32.0f);
  EXPECT_FLOAT_EQ(m->config.rope_scaling.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(m->config.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(m->config.rope_scaling.original_max_position, 8192);

  // Divisors from other parameters cannot be described by the config: refuse, naming the tensor.
  testing::GgufTestWriter::WriteFile(
      (dir / "b.gguf").string(),
      testing::BuildGguf(ref, Llama3Divisors(ref.config, 32.0, 2.0, 8.0, 4096.0 * 3)));
  auto bad = LoadModel((dir / "b.gguf").string(), {});
  EXPECT_EQ(bad.status().code(), StatusCode::kUnimplemented);
  EXPECT_THAT(bad.status().message(), ::testing::HasSubstr("rope_freqs.weight"));
}

// The progress lines of loading the tiny two-layer model with at most one layer line per
// `interval_s`.
std::vector<std::string> LoadProgressLines(double interval_s) {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  TinyModel ref = testing::MakeTinyModel(ModelArch::kLlama, true);
  fs::path dir = TempDir("progress");
  testing::GgufTestWriter::WriteFile((dir / "t.gguf").string(), testing::BuildGguf(ref));
  auto m = LoadModel((dir / "t.gguf").string(), {DType::kF32, true, interval_s});
  spdlog::set_default_logger(previous);
  EXPECT_TRUE(m.ok());
  return sink->last_formatted();
}

TEST(LoaderProgressTest, LogsEachLayerAndTheTotal) {
  std::vector<std::string> lines = LoadProgressLines(0.0);
  ASSERT_EQ(lines.size(), 3u);  // two layers and the total
  EXPECT_THAT(lines[0], ::testing::HasSubstr("layer 1/2"));
  EXPECT_THAT(lines[2], ::testing::HasSubstr("loaded"));
}

TEST(LoaderProgressTest, AQuickLoadLogsOnlyTheTotal) {
  // Layer lines come at most once an interval; the tiny model loads well within an hour.
  std::vector<std::string> lines = LoadProgressLines(3600.0);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], ::testing::HasSubstr("loaded"));
}

// llama.cpp's Q4_K_M recipe leaves Q and K of some layers in Q5_0 and V in Q8_0 (SmolLM2's file
// does in 14 of 30 layers). On the CPU ("auto": stored formats kept) the fused QKV keeps both
// formats as segments instead of being widened to F32: its rows are the stored rows (Q and K
// un-permuted), so dequantized they equal the F32 load of the same file exactly. gate|up, in one
// format, stays a plain view; the CUDA options ("auto" there is BF16) and q8_0 get one dtype.
TEST(GgufMixedFormatTest, FusedQkvKeepsEachPartsFormatOnTheCpu) {
  const TinyModel ref = testing::MakeTinyModel(ModelArch::kLlama, /*tied=*/false);
  const ModelConfig& c = ref.config;
  testing::GgufTypes types;
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string b = "model.layers." + std::to_string(l) + ".";
    types[b + "self_attn.q_proj.weight"] = GgmlType::Q5_0;
    types[b + "self_attn.k_proj.weight"] = GgmlType::Q5_0;
    types[b + "self_attn.v_proj.weight"] = GgmlType::Q8_0;
    types[b + "mlp.gate_proj.weight"] = GgmlType::Q8_0;
    types[b + "mlp.up_proj.weight"] = GgmlType::Q8_0;
  }
  const fs::path path = TempDir("mixed") / "mixed.gguf";
  testing::GgufTestWriter::WriteFile(path.string(), testing::BuildGguf(ref, {}, types));
  auto load = [&](const char* dtype, const char* device) {
    auto options = LoadOptionsForDType(dtype, device);
    EXPECT_TRUE(options.ok()) << options.status().ToString();
    auto m = LoadModel(path.string(), *options);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return std::move(m).value();
  };
  const LoadedModel stored = load("auto", "cpu");
  const LoadedModel f32 = load("f32", "cpu");
  const int64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim();
  std::vector<float> row(static_cast<size_t>(h));
  for (int l = 0; l < c.num_layers; ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    const Tensor& qkv = stored.weights.layers[l].wqkv;
    ASSERT_TRUE(qkv.mixed());
    EXPECT_EQ(qkv.dtype, DType::kQ5_0);
    ASSERT_EQ(qkv.shape, (std::vector<int64_t>{q + 2 * kv, h}));
    ASSERT_EQ(qkv.segments->size(), 2u);
    EXPECT_EQ((*qkv.segments)[0].dtype, DType::kQ5_0);
    EXPECT_EQ((*qkv.segments)[0].rows, q + kv);
    EXPECT_EQ((*qkv.segments)[1].dtype, DType::kQ8_0);
    EXPECT_EQ((*qkv.segments)[1].rows, kv);
    EXPECT_EQ(qkv.nbytes(), static_cast<size_t>(q + kv) * DTypeRowBytes(DType::kQ5_0, h) +
                                static_cast<size_t>(kv) * DTypeRowBytes(DType::kQ8_0, h));
    const Tensor& wide = f32.weights.layers[l].wqkv;
    ASSERT_EQ(wide.dtype, DType::kF32);
    for (int64_t r = 0; r < q + 2 * kv; ++r) {
      const GgmlType type = r < q + kv ? GgmlType::Q5_0 : GgmlType::Q8_0;
      DequantizeRow(type, qkv.row(r), row.data(), h);
      for (int64_t i = 0; i < h; ++i)
        ASSERT_EQ(row[i], wide.as<float>()[r * h + i]) << "row " << r << " column " << i;
    }
    const Tensor& gate_up = stored.weights.layers[l].w_gate_up;
    EXPECT_FALSE(gate_up.mixed());
    EXPECT_EQ(gate_up.dtype, DType::kQ8_0);
  }
  const std::string described = DescribeWeights(stored.weights);
  EXPECT_THAT(described, ::testing::HasSubstr("Q5_0+Q8_0 (2)")) << described;
  // The 4 + 2 * 2 rows of 64 columns per layer are 22 (Q5_0) or 34 (Q8_0) bytes a block, not 4
  // bytes a value: the resident bytes count each segment at its own size.
  EXPECT_LT(WeightBytes(stored.weights), WeightBytes(f32.weights));
  for (const auto& [dtype, device] : {std::pair{"q8_0", "cpu"}, {"auto", "cuda"}}) {
    SCOPED_TRACE(std::string(dtype) + " on " + device);
    const LoadedModel one = load(dtype, device);
    for (const LayerWeights& w : one.weights.layers) {
      EXPECT_FALSE(w.wqkv.mixed());
      EXPECT_EQ(w.wqkv.dtype, std::string(device) == "cuda" ? DType::kBF16 : DType::kQ8_0);
    }
  }
}

}  // namespace
}  // namespace ite

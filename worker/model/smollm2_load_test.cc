// Loads the real SmolLM2-135M-Instruct Q4_1 GGUF ($ITE_MODEL_GGUF) and compares sampled weights
// with what transformers' GGUF loader produces (tests/data/quant/smollm2_samples.json, made by
// scripts/make_quant_goldens.py): dequantized Q4_1/Q8_0 values and Q/K rows back in HF order.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/gguf_reader.h"
#include "worker/model/dequantize.h"
#include "worker/model/model.h"
#include "worker/model/model_loader.h"

namespace ite {
namespace {

// $ITE_MODEL_GGUF, else the default location scripts/fetch_model.sh downloads to.
std::string ModelPath() {
  const char* p = std::getenv("ITE_MODEL_GGUF");
  if (p != nullptr && *p != '\0') return p;
  const char* src = std::getenv("ITE_SOURCE_DIR");
  return std::string(src != nullptr ? src : ".") + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

nlohmann::json Goldens() {
  const char* src = std::getenv("ITE_SOURCE_DIR");
  std::ifstream in(std::string(src != nullptr ? src : ".") +
                   "/tests/data/quant/smollm2_samples.json");
  return nlohmann::json::parse(in, nullptr, false);
}

float At(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::kF32:
      return t.as<float>()[i];
    case DType::kF16:
      return HalfToFloat(t.as<uint16_t>()[i]);
    case DType::kBF16:
      return Bf16ToFloat(t.as<uint16_t>()[i]);
    default:  // block formats: read through DequantizeRow
      break;
  }
  return NAN;
}

// Maps an HF tensor name and row to (fused tensor, row) in ModelWeights.
std::pair<const Tensor*, int64_t> Locate(const LoadedModel& m, const std::string& name,
                                         int64_t row) {
  const ModelConfig& c = m.config;
  const ModelWeights& w = m.weights;
  if (name == "model.embed_tokens.weight") return {&w.token_embedding, row};
  if (name == "model.norm.weight") return {&w.final_norm, 0};
  const std::string prefix = "model.layers.";
  const size_t dot = name.find('.', prefix.size());
  const LayerWeights& L = w.layers.at(std::stoi(name.substr(prefix.size(), dot - prefix.size())));
  const std::string rest = name.substr(dot + 1);
  if (rest == "self_attn.q_proj.weight") return {&L.wqkv, row};
  if (rest == "self_attn.k_proj.weight") return {&L.wqkv, c.q_dim() + row};
  if (rest == "self_attn.v_proj.weight") return {&L.wqkv, c.q_dim() + c.kv_dim() + row};
  if (rest == "self_attn.o_proj.weight") return {&L.wo, row};
  if (rest == "mlp.gate_proj.weight") return {&L.w_gate_up, row};
  if (rest == "mlp.up_proj.weight") return {&L.w_gate_up, c.intermediate_size + row};
  if (rest == "mlp.down_proj.weight") return {&L.w_down, row};
  if (rest == "input_layernorm.weight") return {&L.attn_norm, 0};
  if (rest == "post_attention_layernorm.weight") return {&L.ffn_norm, 0};
  return {nullptr, 0};
}

class SmolLm2LoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(ModelPath())) {
      GTEST_SKIP() << "ITE_MODEL_GGUF not found (" << ModelPath()
                   << "); run scripts/fetch_model.sh";
    }
    goldens_ = Goldens();
    ASSERT_FALSE(goldens_.is_discarded()) << "smollm2_samples.json missing or invalid";
  }

  // Compares every golden sample; `tol` relative to max(1, |value|).
  void ExpectSamples(const LoadedModel& m, float tol) {
    int compared = 0;
    for (const auto& s : goldens_["samples"]) {
      const std::string name = s["name"];
      const int64_t row = s["row"].get<int64_t>() < 0 ? 0 : s["row"].get<int64_t>();
      auto [t, r] = Locate(m, name, row);
      ASSERT_NE(t, nullptr) << name;
      const int64_t cols = t->shape.back();
      for (size_t i = 0; i < s["cols"].size(); ++i) {
        const int64_t col = s["cols"][i];
        const float want = s["values"][i];
        ASSERT_NEAR(At(*t, r * cols + col), want, tol * std::max(1.0f, std::fabs(want)))
            << name << " row " << row << " col " << col;
        ++compared;
      }
    }
    EXPECT_GT(compared, 1000);
  }

  nlohmann::json goldens_;
};

TEST_F(SmolLm2LoadTest, ConfigAndWeightsMatchTransformers) {
  const auto start = std::chrono::steady_clock::now();
  auto m = LoadModel(ModelPath(), {DType::kF32, true});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  RecordProperty("load_seconds", std::to_string(seconds));
  EXPECT_LT(seconds, 20.0);  // "seconds", with slack for a loaded 2-core CI machine

  const ModelConfig& c = m->config;
  const auto& g = goldens_["config"];
  EXPECT_EQ(c.arch, ModelArch::kLlama);
  EXPECT_EQ(c.vocab_size, g["vocab_size"].get<int>());
  EXPECT_EQ(c.hidden_size, g["hidden_size"].get<int>());
  EXPECT_EQ(c.intermediate_size, g["intermediate_size"].get<int>());
  EXPECT_EQ(c.num_layers, g["num_hidden_layers"].get<int>());
  EXPECT_EQ(c.num_heads, g["num_attention_heads"].get<int>());
  EXPECT_EQ(c.num_kv_heads, g["num_key_value_heads"].get<int>());
  EXPECT_FLOAT_EQ(c.rms_norm_eps, g["rms_norm_eps"].get<float>());
  EXPECT_EQ(c.max_position, g["max_position_embeddings"].get<int>());
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_FLOAT_EQ(c.rope_theta, 100000.0f);
  EXPECT_EQ(c.rope_scaling.type, "none");
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2}));
  EXPECT_EQ(m->weights.lm_head.data, m->weights.token_embedding.data);

  ExpectSamples(*m, 1e-6f);

  // The Q samples would not match without the un-permutation: HF row 1 of head 0 is stored at
  // GGUF row 2, so our row 2 must differ from transformers' row 1.
  for (const auto& s : goldens_["samples"]) {
    if (s["name"] != "model.layers.0.self_attn.q_proj.weight" || s["row"] != 1) continue;
    const Tensor& wqkv = m->weights.layers[0].wqkv;
    int differing = 0;
    for (size_t i = 0; i < s["cols"].size(); ++i) {
      differing +=
          At(wqkv, 2 * wqkv.shape[1] + s["cols"][i].get<int64_t>()) != s["values"][i].get<float>();
    }
    EXPECT_GT(differing, 20);
  }
}

TEST_F(SmolLm2LoadTest, Bf16OutputMatchesWithinRounding) {
  auto m = LoadModel(ModelPath(), {DType::kBF16, false});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->weights.layers[3].w_gate_up.dtype, DType::kBF16);
  EXPECT_EQ(m->weights.final_norm.dtype, DType::kBF16);
  ExpectSamples(*m, 1.0f / 128);  // bf16 keeps 8 significant bits
}

// --dtype auto keeps the stored blocks: every matrix row points into the file's own mapping
// (nothing dequantized, nothing copied), and decodes to exactly the row of the F32 load, Q/K
// permutation undone and Q/K/V and gate/up fused included.
TEST_F(SmolLm2LoadTest, StoredBlocksAreViewsOfTheFile) {
  auto options = LoadOptionsForDType("auto", "cpu");
  ASSERT_TRUE(options.ok());
  auto file = GgufFile::Open(ModelPath());
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto q = LoadModelFromGguf(**file, *options);
  auto f = LoadModel(ModelPath(), {DType::kF32, false});
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  ASSERT_TRUE(f.ok());
  const uint8_t* begin = (*file)->mapping()->data();
  const uint8_t* end = begin + (*file)->mapping()->size();
  auto check = [&](const Tensor& qt, const Tensor& ft, DType want, const char* what) {
    SCOPED_TRACE(what);
    ASSERT_EQ(qt.dtype, want);
    ASSERT_EQ(qt.shape, ft.shape);
    std::vector<float> row(static_cast<size_t>(qt.cols()));
    const size_t row_bytes = DTypeRowBytes(qt.dtype, qt.cols());
    for (int64_t r = 0; r < qt.shape[0]; ++r) {
      ASSERT_GE(qt.row(r), begin);
      ASSERT_LE(qt.row(r) + row_bytes, end);
      DequantizeRow(DTypeGgml(qt.dtype), qt.row(r), row.data(), qt.cols());
      ASSERT_EQ(std::memcmp(row.data(), ft.as<float>() + r * ft.cols(), row.size() * 4), 0)
          << "row " << r;
    }
  };
  check(q->weights.token_embedding, f->weights.token_embedding, DType::kQ8_0, "embedding");
  for (size_t l = 0; l < q->weights.layers.size(); l += 7) {
    const LayerWeights& a = q->weights.layers[l];
    const LayerWeights& b = f->weights.layers[l];
    check(a.wqkv, b.wqkv, DType::kQ4_1, "wqkv");
    check(a.wo, b.wo, DType::kQ4_1, "wo");
    check(a.w_gate_up, b.w_gate_up, DType::kQ4_1, "w_gate_up");
    check(a.w_down, b.w_down, DType::kQ4_1, "w_down");
    EXPECT_EQ(a.attn_norm.dtype, DType::kF32);
  }
  // What stays resident is the file's own blocks (plus the F32 norms): about the file's size.
  EXPECT_LT(WeightBytes(q->weights), static_cast<int64_t>(end - begin));
  EXPECT_GT(WeightBytes(q->weights), static_cast<int64_t>(end - begin) * 9 / 10);
}

// --dtype q8_0 on a Q4_1 file: the Q8_0 embedding (already in the format) stays a view of the
// mapping, each Q4_1 matrix is re-quantized: its rows are exactly the Q8_0 encoding of the
// dequantized Q4_1 rows. Resident: the Q8_0 matrices (8.5 bits a weight, more than the file).
TEST_F(SmolLm2LoadTest, Q8_0RequantizesTheQ4_1Matrices) {
  auto options = LoadOptionsForDType("q8_0", "cpu");
  ASSERT_TRUE(options.ok());
  EXPECT_FALSE(LoadOptionsForDType("q8_0", "cuda").ok());
  auto file = GgufFile::Open(ModelPath());
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto q = LoadModelFromGguf(**file, *options);
  auto f = LoadModel(ModelPath(), {DType::kF32, false});
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  ASSERT_TRUE(f.ok());
  const uint8_t* begin = (*file)->mapping()->data();
  const uint8_t* end = begin + (*file)->mapping()->size();
  const Tensor& emb = q->weights.token_embedding;
  ASSERT_EQ(emb.dtype, DType::kQ8_0);
  EXPECT_GE(emb.row(0), begin);
  EXPECT_LT(emb.row(emb.shape[0] - 1), end);
  auto check = [&](const Tensor& qt, const Tensor& ft, const char* what) {
    SCOPED_TRACE(what);
    ASSERT_EQ(qt.dtype, DType::kQ8_0);
    ASSERT_EQ(qt.shape, ft.shape);
    const size_t row_bytes = DTypeRowBytes(DType::kQ8_0, qt.cols());
    std::vector<uint8_t> want(row_bytes);
    for (int64_t r = 0; r < qt.shape[0]; ++r) {
      ASSERT_TRUE(qt.row(r) + row_bytes <= begin || qt.row(r) >= end) << "row " << r;
      QuantizeRowQ8_0(ft.as<float>() + r * ft.cols(), want.data(), ft.cols());
      ASSERT_EQ(std::memcmp(qt.row(r), want.data(), row_bytes), 0) << "row " << r;
    }
  };
  for (size_t l = 0; l < q->weights.layers.size(); l += 7) {
    const LayerWeights& a = q->weights.layers[l];
    const LayerWeights& b = f->weights.layers[l];
    check(a.wqkv, b.wqkv, "wqkv");
    check(a.wo, b.wo, "wo");
    check(a.w_gate_up, b.w_gate_up, "w_gate_up");
    check(a.w_down, b.w_down, "w_down");
    EXPECT_EQ(a.attn_norm.dtype, DType::kF32);
    EXPECT_EQ(a.ffn_norm.dtype, DType::kF32);
  }
  EXPECT_EQ(q->weights.final_norm.dtype, DType::kF32);
  // 34 bytes per 32 weights against Q4_1's 20: more than the file, a quarter of F32.
  EXPECT_GT(WeightBytes(q->weights), static_cast<int64_t>(end - begin));
  EXPECT_LT(WeightBytes(q->weights), WeightBytes(f->weights) * 3 / 10);
}

}  // namespace
}  // namespace ite

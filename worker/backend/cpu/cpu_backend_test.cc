// Consistency of the CPU backend on a random tiny model: the same tokens give the same logits
// however they are chunked, batched or placed in the KV pool. Absolute correctness against
// Hugging Face transformers is checked by the golden tests (tests/golden).
#include "worker/backend/cpu/cpu_backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "worker/backend/cpu/random_model.h"

namespace ite {
namespace {

std::unique_ptr<Backend> MakeBackend(bool qkv_bias = false, DType dtype = DType::kF32,
                                     int threads = 2, bool kv_bf16 = false) {
  KvCacheOptions kv;
  kv.block_size = 4;
  kv.num_blocks = 40;
  kv.cpu_bf16 = kv_bf16;
  auto b = CreateCpuBackend(RandomModel(TinyRandomConfig(qkv_bias), dtype, 42), kv, threads);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return std::move(b).value();
}

std::vector<float> RunChunk(Backend* b, std::span<const int32_t> tokens, int32_t start,
                            std::span<const int32_t> table, LogitsMode mode) {
  ForwardBatch batch;
  batch.chunks.push_back(LogitsChunk(tokens, start, table, mode));
  std::vector<float> logits;
  Status s = ForwardLogits(*b, batch, &logits);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return logits;
}

void ExpectClose(std::span<const float> a, std::span<const float> b, float tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol) << "index " << i;
}

const std::vector<int32_t> kSeq = {5, 17, 3, 96, 0, 44, 44, 12, 7, 81, 2};

TEST(CpuBackendTest, ChunkedPrefillAndDecodeMatchOnePrefill) {
  for (bool bias : {false, true}) {
    auto b = MakeBackend(bias);
    const int32_t vocab = b->config().vocab_size;
    std::vector<int32_t> t1 = {0, 1, 2}, t2 = {10, 11, 12}, t3 = {20, 21, 22};
    auto full = RunChunk(b.get(), kSeq, 0, t1, LogitsMode::kAll);
    ASSERT_EQ(full.size(), kSeq.size() * vocab);
    for (float f : full) ASSERT_TRUE(std::isfinite(f));

    // Prefix of 5 then the other 6, into other blocks.
    std::span<const int32_t> seq(kSeq);
    auto a = RunChunk(b.get(), seq.first(5), 0, t2, LogitsMode::kAll);
    auto c = RunChunk(b.get(), seq.subspan(5), 5, t2, LogitsMode::kAll);
    a.insert(a.end(), c.begin(), c.end());
    ExpectClose(a, full, 1e-5f);

    // One token at a time, kLast.
    for (size_t i = 0; i < kSeq.size(); ++i) {
      auto step =
          RunChunk(b.get(), seq.subspan(i, 1), static_cast<int32_t>(i), t3, LogitsMode::kLast);
      ExpectClose(step, std::span<const float>(full).subspan(i * vocab, vocab), 1e-5f);
    }
  }
}

TEST(CpuBackendTest, BatchOfChunksMatchesSeparateRuns) {
  auto b = MakeBackend(true);
  const int32_t vocab = b->config().vocab_size;
  std::span<const int32_t> seq(kSeq);
  std::vector<int32_t> ta = {3, 4, 5}, tb = {6, 7, 8}, tc = {9, 1, 2};
  // Sequence B already has a 4-token prefix in its cache; C is a non-final prefill chunk.
  RunChunk(b.get(), seq.first(4), 0, tb, LogitsMode::kNone);
  auto ref_a = RunChunk(b.get(), seq, 0, {std::vector<int32_t>{30, 31, 32}}, LogitsMode::kLast);
  RunChunk(b.get(), seq.first(4), 0, {std::vector<int32_t>{33, 34}}, LogitsMode::kNone);
  auto ref_b =
      RunChunk(b.get(), seq.subspan(4, 3), 4, {std::vector<int32_t>{33, 34}}, LogitsMode::kAll);

  ForwardBatch batch;
  batch.chunks.push_back(LogitsChunk(seq, 0, ta, LogitsMode::kLast));
  batch.chunks.push_back(LogitsChunk(seq.subspan(4, 3), 4, tb, LogitsMode::kAll));
  batch.chunks.push_back(LogitsChunk(seq.first(6), 0, tc, LogitsMode::kNone));
  std::vector<float> logits;
  ASSERT_TRUE(ForwardLogits(*b, batch, &logits).ok());
  ASSERT_EQ(logits.size(), static_cast<size_t>(1 + 3) * vocab);
  ExpectClose(std::span<const float>(logits).first(vocab), ref_a, 1e-5f);
  ExpectClose(std::span<const float>(logits).subspan(vocab), ref_b, 1e-5f);

  // The kNone chunk filled its cache: decoding after it matches a fresh run.
  auto after = RunChunk(b.get(), seq.subspan(6, 1), 6, tc, LogitsMode::kLast);
  auto fresh =
      RunChunk(b.get(), seq.first(7), 0, {std::vector<int32_t>{35, 36}}, LogitsMode::kLast);
  ExpectClose(after, fresh, 1e-5f);
}

TEST(CpuBackendTest, ThreadCountDoesNotChangeResults) {
  auto one = MakeBackend(false, DType::kF32, 1);
  auto three = MakeBackend(false, DType::kF32, 3);
  std::vector<int32_t> t = {0, 1, 2};
  EXPECT_EQ(RunChunk(one.get(), kSeq, 0, t, LogitsMode::kAll),
            RunChunk(three.get(), kSeq, 0, t, LogitsMode::kAll));
}

TEST(CpuBackendTest, Bf16WeightsMatchTheSameValuesInF32) {
  // Both models hold bf16-representable values (the F32 one widened), so only rounding of the
  // activations may differ.
  auto bf = MakeBackend(true, DType::kBF16);
  LoadedModel m = RandomModel(TinyRandomConfig(true), DType::kBF16, 42);
  auto widen = [](Tensor& t) {
    if (t.empty()) return;
    void* p = nullptr;
    Tensor f = AllocTensor(DType::kF32, t.shape, &p);
    for (int64_t i = 0; i < t.numel(); ++i) {
      uint32_t bits = static_cast<uint32_t>(t.as<uint16_t>()[i]) << 16;
      std::memcpy(static_cast<float*>(p) + i, &bits, 4);
    }
    t = f;
  };
  widen(m.weights.token_embedding);
  widen(m.weights.final_norm);
  widen(m.weights.lm_head);
  for (LayerWeights& lw : m.weights.layers) {
    for (Tensor* t :
         {&lw.attn_norm, &lw.wqkv, &lw.bqkv, &lw.wo, &lw.ffn_norm, &lw.w_gate_up, &lw.w_down})
      widen(*t);
  }
  KvCacheOptions kv;
  kv.block_size = 4;
  kv.num_blocks = 8;
  auto f32 = CreateCpuBackend(std::move(m), kv, 2);
  ASSERT_TRUE(f32.ok());
  std::vector<int32_t> t = {0, 1, 2};
  ExpectClose(RunChunk(bf.get(), kSeq, 0, t, LogitsMode::kAll),
              RunChunk(f32->get(), kSeq, 0, t, LogitsMode::kAll), 1e-5f);
}

// The bf16 KV cache: the same logits as fp32 K/V up to bf16's rounding of K and V (8 bits of
// mantissa), chunking still irrelevant, and half the bytes per block.
TEST(CpuBackendTest, Bf16KvCacheMatchesF32Cache) {
  auto f32 = MakeBackend();
  auto bf16 = MakeBackend(false, DType::kF32, 2, /*kv_bf16=*/true);
  std::vector<int32_t> table = {0, 1, 2};
  auto want = RunChunk(f32.get(), kSeq, 0, table, LogitsMode::kAll);
  auto got = RunChunk(bf16.get(), kSeq, 0, table, LogitsMode::kAll);
  float worst = 0.0f;
  for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(want[i] - got[i]));
  ExpectClose(got, want, 2e-2f);
  EXPECT_GT(worst, 0.0f) << "bf16 K/V rounded nothing: the option did not take effect";
  std::span<const int32_t> seq(kSeq);
  const std::vector<int32_t> other = {10, 11, 12};
  auto a = RunChunk(bf16.get(), seq.first(5), 0, other, LogitsMode::kAll);
  auto c = RunChunk(bf16.get(), seq.subspan(5), 5, other, LogitsMode::kAll);
  a.insert(a.end(), c.begin(), c.end());
  ExpectClose(a, got, 1e-5f);

  KvCacheOptions kv;
  kv.block_size = 4;
  kv.max_kv_bytes = 1 << 20;
  auto blocks = [&](bool bf16_kv) {
    kv.cpu_bf16 = bf16_kv;
    auto b = CreateCpuBackend(RandomModel(TinyRandomConfig(false), DType::kF32, 42), kv, 1);
    EXPECT_TRUE(b.ok());
    return b.ok() ? (*b)->num_blocks() : 0;
  };
  EXPECT_EQ(blocks(true), 2 * blocks(false));
}

TEST(CpuBackendTest, CopyBlocksCarriesThePrefix) {
  for (bool kv_bf16 : {false, true}) {
    auto b = MakeBackend(false, DType::kF32, 2, kv_bf16);
    std::span<const int32_t> seq(kSeq);
    std::vector<int32_t> orig = {11, 12, 13}, copy = {20, 21, 13};
    RunChunk(b.get(), seq.first(8), 0, orig, LogitsMode::kNone);
    std::vector<int32_t> src = {11, 12}, dst = {20, 21};
    ASSERT_TRUE(b->CopyBlocks(src, dst).ok());
    auto from_orig = RunChunk(b.get(), seq.subspan(8, 1), 8, orig, LogitsMode::kLast);
    auto from_copy = RunChunk(b.get(), seq.subspan(8, 1), 8, copy, LogitsMode::kLast);
    EXPECT_EQ(from_orig, from_copy);

    std::vector<int32_t> bad = {40};
    EXPECT_EQ(b->CopyBlocks(bad, std::span<const int32_t>(src).first(1)).code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(b->CopyBlocks(src, std::span<const int32_t>(dst).first(1)).code(),
              StatusCode::kInvalidArgument);
  }
}

TEST(CpuBackendTest, BadBatchesAreErrorsNotCrashes) {
  auto b = MakeBackend();
  std::vector<float> logits;
  std::vector<int32_t> table = {0, 1, 2, 3};
  std::vector<int32_t> ok_tokens = {1, 2};
  std::vector<int32_t> bad_token = {1, 97};
  std::vector<int32_t> negative_token = {-1};
  std::vector<int32_t> bad_table = {0, 40};
  std::vector<int32_t> short_table = {0};
  std::vector<int32_t> empty;
  auto forward = [&](std::span<const int32_t> tokens, int32_t start, std::span<const int32_t> tbl) {
    ForwardBatch batch;
    batch.chunks.push_back(LogitsChunk(tokens, start, tbl, LogitsMode::kLast));
    return ForwardLogits(*b, batch, &logits);
  };
  EXPECT_EQ(ForwardLogits(*b, ForwardBatch{}, &logits).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(forward(empty, 0, table).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(forward(bad_token, 0, table).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(forward(negative_token, 0, table).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(forward(ok_tokens, 3, bad_table).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(forward(ok_tokens, 3, short_table).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(forward(ok_tokens, -1, table).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(forward(ok_tokens, 63, std::vector<int32_t>(17, 0)).code(), StatusCode::kOutOfRange);
  // Still usable afterwards.
  EXPECT_TRUE(forward(ok_tokens, 0, table).ok());
  EXPECT_EQ(logits.size(), 97u);
}

TEST(CpuBackendTest, MisShapedWeightsAreRejectedByName) {
  LoadedModel m = RandomModel(TinyRandomConfig(false), DType::kF32, 1);
  std::mt19937 rng(0);
  m.weights.layers[1].wo = RandomTensor(DType::kF32, {32, 31}, &rng, 0, 1);
  auto b = CreateCpuBackend(std::move(m), KvCacheOptions{}, 1);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("layers.1.wo"), std::string::npos) << b.status().message();

  LoadedModel q = RandomModel(TinyRandomConfig(true), DType::kF32, 1);
  q.weights.layers[0].bqkv = Tensor();
  auto b2 = CreateCpuBackend(std::move(q), KvCacheOptions{}, 1);
  ASSERT_FALSE(b2.ok());
  EXPECT_NE(b2.status().message().find("layers.0.bqkv"), std::string::npos);

  KvCacheOptions none;
  none.max_kv_bytes = 10;
  EXPECT_FALSE(
      CreateCpuBackend(RandomModel(TinyRandomConfig(false), DType::kF32, 1), none, 1).ok());
}

}  // namespace
}  // namespace ite

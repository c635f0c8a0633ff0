// DecodeAttentionOut against cpu::PagedAttention followed by the O product and the residual add
// in fp32 (the attention row rounded to the dtype first, as the separate kernels store it), for
// the head layouts of Llama-3.2-1B, Qwen2.5-0.5B, SmolLM2, an 8B-like head_dim 128 and a group
// of 16; contexts of 1 to 1024 tokens; the newest K/V row written late by the previous kernel.
// Cache slots outside the sequence hold NaN.
#include <cmath>
#include <string>

#include "ite/kernels/attention.h"
#include "test_util.h"
#include "worker/backend/cpu/cpu_ops.h"

namespace ite::kernels {
namespace {

using testing::DeviceBuffer;
using testing::Download16;
using testing::RelError;
using testing::RoundTo;
using testing::Tolerance;
using testing::Upload16;
using testing::UploadRaw;

struct Case {
  int32_t kv_len, heads, kv_heads, head_dim, hidden, block_size;
};

bool HasClusters() {
  int major = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  return major >= 9;
}

// late_newest: the newest K/V row starts as NaN and a kernel launched just before this one
// writes it 200 us after letting it start (as the decode step's QKV kernel writes that row).
void RunCase(const Case& c, DType dtype, std::mt19937& rng, bool late_newest = false) {
  SCOPED_TRACE(::testing::Message()
               << DTypeName(dtype) << " kv_len=" << c.kv_len << " heads=" << c.heads << "/"
               << c.kv_heads << " hd=" << c.head_dim << " hidden=" << c.hidden
               << " bs=" << c.block_size << " late_newest=" << late_newest);
  const DecodeAttentionOutPlan plan =
      PlanDecodeAttentionOut(dtype, c.heads, c.kv_heads, c.head_dim, c.hidden);
  ASSERT_GT(plan.splits, 0) << plan.why_not;
  EXPECT_GE(int64_t{plan.splits} * plan.rows, c.hidden);
  EXPECT_EQ(plan.workspace_bytes, DecodeAttentionOutWorkspaceBytes(c.kv_heads, c.hidden));

  const std::vector<int32_t> kv_lens = {c.kv_len};
  testing::RandomPagedCache cache =
      testing::MakeRandomPagedCache(kv_lens, c.block_size, c.kv_heads, c.head_dim, dtype, rng);
  const int32_t q_dim = c.heads * c.head_dim;
  std::vector<float> q = testing::RandomVector(q_dim, rng, -2.0f, 2.0f);
  RoundTo(q, dtype);
  std::vector<float> wo = testing::RandomVector(size_t(c.hidden) * q_dim, rng, -0.05f, 0.05f);
  RoundTo(wo, dtype);
  std::vector<float> residual = testing::RandomVector(c.hidden, rng);
  RoundTo(residual, dtype);

  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  std::vector<float> attn(q_dim);
  cpu::PagedKv view{cache.k.data(),   cache.v.data(),     cache.num_blocks,
                    cache.block_size, cache.num_kv_heads, cache.head_dim};
  std::span<const int32_t> table(cache.block_tables.data(),
                                 (c.kv_len + c.block_size - 1) / c.block_size);
  cpu::PagedAttention(view, table, c.kv_len - 1, q.data(), 1, c.heads, scale, attn.data());
  RoundTo(attn, dtype);
  std::vector<float> ref(c.hidden);
  for (int32_t n = 0; n < c.hidden; ++n) {
    double acc = 0.0;
    for (int32_t k = 0; k < q_dim; ++k) acc += double(wo[size_t(n) * q_dim + k]) * attn[k];
    ref[n] = residual[n] + static_cast<float>(acc);
  }

  auto dq = Upload16(q, dtype), dwo = Upload16(wo, dtype), dres = Upload16(residual, dtype);
  auto dkv = UploadRaw(kv_lens), dbt = UploadRaw(cache.block_tables);
  DeviceBuffer dattn(size_t(q_dim) * 2);
  dattn.Poison();  // the fused kernel never stores the attention row
  DecodeAttentionOutArgs a;
  a.attention.q = dq.get();
  a.attention.out = dattn.get();
  a.attention.cache = cache.View();
  a.attention.kv_lens = dkv.as<int32_t>();
  a.attention.block_tables = dbt.as<int32_t>();
  a.attention.max_blocks_per_seq = cache.max_blocks_per_seq;
  a.attention.batch = 1;
  a.attention.num_heads = c.heads;
  a.attention.scale = scale;
  a.wo = dwo.get();
  a.residual = dres.get();
  a.hidden = c.hidden;
  // The workspace's counters start at zero once; every launch must leave them so (the second
  // launch below checks it).
  DeviceBuffer dworkspace(plan.workspace_bytes);
  ITE_CUDA_OK(cudaMemset(dworkspace.get(), 0, plan.workspace_bytes));
  a.workspace = dworkspace.get();
  a.workspace_bytes = plan.workspace_bytes;

  cudaStream_t stream = nullptr;
  DeviceBuffer true_k, true_v, doffset;
  if (late_newest) {
    const int32_t pos = c.kv_len - 1, row_elems = c.kv_heads * c.head_dim;
    const int32_t block = cache.block_tables[pos / c.block_size];
    const std::vector<int64_t> offsets = {(int64_t{block} * c.block_size + pos % c.block_size) *
                                          row_elems};
    doffset = UploadRaw(offsets);
    true_k = DeviceBuffer(cache.dk.bytes());
    true_v = DeviceBuffer(cache.dv.bytes());
    ITE_CUDA_OK(cudaMemcpy(true_k.get(), cache.dk.get(), cache.dk.bytes(), cudaMemcpyDefault));
    ITE_CUDA_OK(cudaMemcpy(true_v.get(), cache.dv.get(), cache.dv.bytes(), cudaMemcpyDefault));
    ITE_CUDA_OK(cudaMemset(cache.dk.as<uint16_t>() + offsets[0], 0xFF, size_t(row_elems) * 2));
    ITE_CUDA_OK(cudaMemset(cache.dv.as<uint16_t>() + offsets[0], 0xFF, size_t(row_elems) * 2));
    ITE_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    ASSERT_TRUE(testing::LateCopy16(true_k.get(), cache.dk.get(), doffset.as<int64_t>(), 1,
                                    row_elems, 200'000, stream)
                    .ok());
    ASSERT_TRUE(testing::LateCopy16(true_v.get(), cache.dv.get(), doffset.as<int64_t>(), 1,
                                    row_elems, 0, stream)
                    .ok());
  }
  const Status st = DecodeAttentionOut(a, plan, stream);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ITE_CUDA_OK(cudaDeviceSynchronize());
  if (stream != nullptr) {
    ITE_CUDA_OK(cudaStreamDestroy(stream));
  }
  const std::vector<float> out = Download16(dres, c.hidden, dtype);
  EXPECT_EQ(testing::CountNonFinite(out), 0u);
  EXPECT_LT(RelError(out, ref), Tolerance(dtype));
  // What the product added, on its own, within the same bound (the residual alone would hide a
  // wrong product of small values).
  std::vector<float> added(c.hidden), ref_added(c.hidden);
  for (int32_t n = 0; n < c.hidden; ++n) {
    added[n] = out[n] - residual[n];
    ref_added[n] = ref[n] - residual[n];
  }
  EXPECT_LT(RelError(added, ref_added), 2 * Tolerance(dtype));

  // Twice more from the first result: a launch after another adds the whole product again (the
  // first left its counters at zero), and the same input gives the same bits (the kv heads'
  // partial sums are added in one order, whichever finishes last).
  std::vector<float> again[2];
  for (std::vector<float>& result : again) {
    auto dres2 = Upload16(out, dtype);
    a.residual = dres2.get();
    const Status st2 = DecodeAttentionOut(a, plan, nullptr);
    ASSERT_TRUE(st2.ok()) << st2.ToString();
    ITE_CUDA_OK(cudaDeviceSynchronize());
    result = Download16(dres2, c.hidden, dtype);
  }
  std::vector<float> added2(c.hidden);
  for (int32_t n = 0; n < c.hidden; ++n) added2[n] = again[0][n] - out[n];
  EXPECT_LT(RelError(added2, ref_added), 2 * Tolerance(dtype));
  EXPECT_EQ(again[0], again[1]);
}

const Case kModels[] = {
    {300, 32, 8, 64, 2048, 16},   // Llama-3.2-1B
    {200, 14, 2, 64, 896, 16},    // Qwen2.5-0.5B
    {1000, 9, 3, 64, 576, 7},     // SmolLM2-135M (three kv heads), odd block size
    {1, 32, 8, 64, 2048, 16},     // first token
    {1024, 32, 8, 64, 2048, 16},  // the longest context the CUDA ops send it
    {450, 32, 8, 128, 1024, 16},  // head_dim 128, GQA 4
    {77, 16, 1, 128, 512, 16},    // a group of 16 query heads
    {20, 4, 2, 64, 128, 16},      // a tiny model: more splits than tiles, 8 rows a block
};

TEST(DecodeAttentionOutKernel, MatchesCpuReference) {
  ITE_SKIP_WITHOUT_GPU();
  if (!HasClusters()) GTEST_SKIP() << "needs thread-block clusters (sm_90)";
  std::mt19937 rng(31);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (const Case& c : kModels) RunCase(c, dtype, rng);
  }
}

TEST(DecodeAttentionOutKernel, ReadsTheNewestRowOnlyAfterThePreviousKernel) {
  // Read too early, the newest row is NaN here and so is every output.
  ITE_SKIP_WITHOUT_GPU();
  if (!HasClusters()) GTEST_SKIP() << "needs thread-block clusters (sm_90)";
  std::mt19937 rng(32);
  for (const Case& c : {kModels[0], kModels[1], kModels[3], kModels[5]})
    RunCase(c, DType::kBF16, rng, /*late_newest=*/true);
}

TEST(DecodeAttentionOutKernel, PlanSaysWhyItDoesNotApply) {
  // 8192 rows of wo over 16 blocks a kv head, 1024 columns a kv head: 1 MB a block, more than
  // its shared memory; Llama-3.1-8B's 256 rows x 512 columns (256 KB) do not fit either.
  ITE_SKIP_WITHOUT_GPU();
  if (!HasClusters()) GTEST_SKIP() << "needs thread-block clusters (sm_90)";
  const DecodeAttentionOutPlan big = PlanDecodeAttentionOut(DType::kBF16, 64, 8, 128, 8192);
  EXPECT_EQ(big.splits, 0);
  EXPECT_NE(std::string(big.why_not).find("does not fit"), std::string::npos) << big.why_not;
  const DecodeAttentionOutPlan llama8b = PlanDecodeAttentionOut(DType::kBF16, 32, 8, 128, 4096);
  EXPECT_EQ(llama8b.splits, 0) << llama8b.rows;
  const DecodeAttentionOutPlan wide = PlanDecodeAttentionOut(DType::kBF16, 40, 2, 128, 1024);
  EXPECT_EQ(wide.splits, 0);
  EXPECT_NE(std::string(wide.why_not).find("16 query heads"), std::string::npos);
}

}  // namespace
}  // namespace ite::kernels

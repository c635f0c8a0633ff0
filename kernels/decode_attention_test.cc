// DecodeAttention against cpu::PagedAttention (one query token per sequence): mixed lengths up
// to 32k, GQA ratios 1/4/7/8/20, head_dim 64/128, f16/bf16, split counts from the heuristic and
// forced ones. Cache slots outside every sequence hold NaN.
#include <algorithm>

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
  int32_t batch, max_len, heads, kv_heads, head_dim, block_size;
  int32_t splits;  // 0: DecodeNumSplits
};

// late_newest: each sequence's newest K/V row (position kv_len - 1) starts as NaN and is
// written by a kernel launched just before the attention, which lets the attention start at
// once and writes only 200 us later (the decode step's QKV kernel writes that row the same way).
void RunCase(const Case& c, DType dtype, std::mt19937& rng, bool cluster_merge = true,
             bool late_newest = false) {
  std::uniform_int_distribution<int32_t> ld(1, c.max_len);
  std::vector<int32_t> kv_lens(c.batch);
  int32_t max_len = 0;
  for (int32_t b = 0; b < c.batch; ++b) {
    kv_lens[b] = b == 0 ? c.max_len : ld(rng);
    max_len = std::max(max_len, kv_lens[b]);
  }
  int32_t sms = 132;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const int32_t splits =
      c.splits > 0 ? c.splits
                   : DecodeNumSplits(c.batch, c.heads, c.kv_heads, c.head_dim, max_len, sms);
  SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " batch=" << c.batch
                                    << " max_len=" << c.max_len << " heads=" << c.heads << "/"
                                    << c.kv_heads << " hd=" << c.head_dim << " bs=" << c.block_size
                                    << " splits=" << splits << " cluster_merge=" << cluster_merge
                                    << " late_newest=" << late_newest);
  testing::RandomPagedCache cache =
      testing::MakeRandomPagedCache(kv_lens, c.block_size, c.kv_heads, c.head_dim, dtype, rng);
  const size_t row = size_t(c.heads) * c.head_dim;
  std::vector<float> q = testing::RandomVector(size_t(c.batch) * row, rng, -2.0f, 2.0f);
  RoundTo(q, dtype);
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  std::vector<float> ref(q.size());
  cpu::PagedKv view{cache.k.data(),   cache.v.data(),     cache.num_blocks,
                    cache.block_size, cache.num_kv_heads, cache.head_dim};
  for (int32_t b = 0; b < c.batch; ++b) {
    std::span<const int32_t> table(cache.block_tables.data() + size_t(b) * cache.max_blocks_per_seq,
                                   (kv_lens[b] + c.block_size - 1) / c.block_size);
    cpu::PagedAttention(view, table, kv_lens[b] - 1, q.data() + size_t(b) * row, 1, c.heads, scale,
                        ref.data() + size_t(b) * row);
  }
  auto dq = Upload16(q, dtype);
  auto dkv = UploadRaw(kv_lens), dbt = UploadRaw(cache.block_tables);
  DeviceBuffer dout(q.size() * 2);
  dout.Poison();
  const size_t ws_bytes = DecodeWorkspaceBytes(c.batch, c.heads, c.head_dim, splits);
  DeviceBuffer ws(ws_bytes);
  ws.Poison();
  DecodeAttentionArgs args;
  args.q = dq.get();
  args.out = dout.get();
  args.cache = cache.View();
  args.kv_lens = dkv.as<int32_t>();
  args.block_tables = dbt.as<int32_t>();
  args.max_blocks_per_seq = cache.max_blocks_per_seq;
  args.batch = c.batch;
  args.num_heads = c.heads;
  args.scale = scale;
  args.num_splits = splits;
  args.workspace = ws.get();
  args.workspace_bytes = ws_bytes;
  args.cluster_merge = cluster_merge;
  cudaStream_t stream = nullptr;
  DeviceBuffer true_k, true_v, doffsets;
  std::vector<int64_t> offsets;
  const int32_t row_elems = c.kv_heads * c.head_dim;
  if (late_newest) {
    for (int32_t b = 0; b < c.batch; ++b) {
      const int32_t pos = kv_lens[b] - 1;
      const int32_t block = cache.block_tables[size_t(b) * cache.max_blocks_per_seq +
                                               pos / c.block_size];
      offsets.push_back((int64_t{block} * c.block_size + pos % c.block_size) * row_elems);
    }
    doffsets = UploadRaw(offsets);
    true_k = DeviceBuffer(cache.dk.bytes());
    true_v = DeviceBuffer(cache.dv.bytes());
    ITE_CUDA_OK(cudaMemcpy(true_k.get(), cache.dk.get(), cache.dk.bytes(), cudaMemcpyDefault));
    ITE_CUDA_OK(cudaMemcpy(true_v.get(), cache.dv.get(), cache.dv.bytes(), cudaMemcpyDefault));
    for (int64_t off : offsets) {
      ITE_CUDA_OK(cudaMemset(cache.dk.as<uint16_t>() + off, 0xFF, size_t(row_elems) * 2));
      ITE_CUDA_OK(cudaMemset(cache.dv.as<uint16_t>() + off, 0xFF, size_t(row_elems) * 2));
    }
    ITE_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    const int32_t n = static_cast<int32_t>(offsets.size());
    ASSERT_TRUE(testing::LateCopy16(true_k.get(), cache.dk.get(), doffsets.as<int64_t>(), n,
                                    row_elems, 200'000, stream)
                    .ok());
    ASSERT_TRUE(testing::LateCopy16(true_v.get(), cache.dv.get(), doffsets.as<int64_t>(), n,
                                    row_elems, 0, stream)
                    .ok());
  }
  const Status st = DecodeAttention(args, stream);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ITE_CUDA_OK(cudaDeviceSynchronize());
  if (stream != nullptr) {
    ITE_CUDA_OK(cudaStreamDestroy(stream));
  }
  std::vector<float> out = Download16(dout, q.size(), dtype);
  EXPECT_EQ(testing::CountNonFinite(out), 0u);
  EXPECT_LT(RelError(out, ref), Tolerance(dtype));
  // A cluster merge (sm_90, 2-16 splits) leaves the poisoned workspace alone; the second
  // kernel's merge fills it.
  int major = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  if (splits > 1) {
    const bool clustered = cluster_merge && major >= 9 && splits <= 16;
    const std::vector<uint8_t> bytes = testing::DownloadRaw<uint8_t>(ws, ws_bytes);
    const bool untouched =
        std::all_of(bytes.begin(), bytes.end(), [](uint8_t v) { return v == 0xFF; });
    EXPECT_EQ(untouched, clustered);
  }
}

TEST(DecodeAttentionKernel, MatchesCpuReference) {
  ITE_SKIP_WITHOUT_GPU();
  const Case cases[] = {
      {1, 1, 8, 8, 64, 16, 0},       // first token
      {1, 4099, 32, 8, 128, 16, 0},  // GQA 4, heuristic splits
      {3, 1000, 28, 4, 128, 16, 0},  // GQA 7, mixed lengths
      {17, 777, 16, 2, 64, 7, 0},    // GQA 8, odd block size
      {64, 600, 32, 8, 128, 16, 0},  // batch 64
      {60, 300, 32, 8, 128, 16, 1},  // 480 unsplit blocks: the 3-warp kernel on 121-160 SMs
      {5, 2000, 40, 2, 128, 16, 0},  // group 20: two head chunks per kv head
      {4, 1500, 8, 8, 128, 16, 1},   // forced single split (no combine pass)
      {4, 1500, 32, 8, 64, 16, 37},  // forced many splits, some empty for short rows
  };
  std::mt19937 rng(14);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (const Case& c : cases) RunCase(c, dtype, rng);
  }
}

TEST(DecodeAttentionKernel, SplitsMergedInAClusterOrByTheSecondKernel) {
  // 2-16 splits merge in a thread-block cluster on sm_90, more by the second kernel; both ways
  // must give the reference's output, empty splits (more splits than tiles) included.
  ITE_SKIP_WITHOUT_GPU();
  const Case cases[] = {
      {1, 300, 32, 8, 64, 16, 16},    // Llama-3.2-1B at batch 1: 16 splits of one or two tiles
      {2, 200, 14, 2, 64, 16, 5},     // Qwen2.5-0.5B heads, an odd cluster size
      {1, 40, 32, 8, 128, 16, 8},     // more splits than tiles: most blocks have nothing to read
      {3, 700, 40, 2, 128, 16, 3},    // two head chunks per kv head
      {4, 900, 8, 8, 64, 7, 2},       // odd block size, one head per kv head
      {1, 5000, 32, 8, 128, 16, 17},  // one over the cluster limit: always the second kernel
  };
  std::mt19937 rng(16);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (const Case& c : cases) {
      for (bool cluster : {true, false}) RunCase(c, dtype, rng, cluster);
    }
  }
}

TEST(DecodeAttentionKernel, ReadsTheNewestRowOnlyAfterThePreviousKernel) {
  // The cached rows are read before the wait for the previous kernel, the newest one after it;
  // read too early, the newest row is NaN here.
  ITE_SKIP_WITHOUT_GPU();
  const Case cases[] = {
      {1, 300, 32, 8, 64, 16, 16},  // Llama-3.2-1B at batch 1, cluster merge
      {1, 1, 8, 8, 64, 16, 0},      // first token: the newest row is the only one
      {2, 200, 14, 2, 64, 16, 5},   // Qwen2.5-0.5B heads
      {3, 700, 32, 8, 128, 16, 0},  // mixed lengths, head_dim 128
      {5, 100, 32, 8, 128, 7, 1},   // one split: each block's tiles hold the newest row
  };
  std::mt19937 rng(17);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (const Case& c : cases) {
      for (bool cluster : {true, false}) RunCase(c, dtype, rng, cluster, /*late_newest=*/true);
    }
  }
}

TEST(DecodeAttentionKernel, LongContext32k) {
  ITE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(15);
  RunCase({2, 32768, 32, 8, 128, 16, 0}, DType::kBF16, rng);
}

TEST(DecodeAttentionKernel, SplitHeuristic) {
  // Small batches at long context get many splits; big batches need none.
  // The best or near-best counts of the H200 sweep in docs/perf.md (132 multiprocessors).
  EXPECT_EQ(DecodeNumSplits(1, 32, 8, 128, 32768, 132), 33);
  EXPECT_EQ(DecodeNumSplits(1, 32, 8, 128, 512, 132), 8);  // one split per 64 positions
  EXPECT_EQ(DecodeNumSplits(16, 32, 8, 128, 4096, 132), 2);
  EXPECT_EQ(DecodeNumSplits(64, 32, 8, 128, 512, 132), 1);
  EXPECT_EQ(DecodeNumSplits(64, 32, 8, 128, 4096, 132), 3);
  EXPECT_EQ(DecodeNumSplits(256, 32, 8, 128, 4096, 132), 1);
  EXPECT_EQ(DecodeNumSplits(256, 32, 8, 128, 16384, 132), 1);
  EXPECT_EQ(DecodeNumSplits(1, 32, 8, 128, 10, 132), 1);  // too short to split
  EXPECT_EQ(DecodeWorkspaceBytes(4, 32, 128, 1), 0u);
}

TEST(DecodeAttentionKernel, RejectsMissingWorkspace) {
  int dummy = 0;
  DecodeAttentionArgs args;
  args.q = args.out = &dummy;
  args.kv_lens = args.block_tables = &dummy;
  args.cache = PagedKvCache{&dummy, &dummy, DType::kBF16, 1, 16, 1, 128};
  args.num_heads = 1;
  args.batch = 1;
  args.max_blocks_per_seq = 1;
  args.num_splits = 4;
  const Status st = DecodeAttention(args, nullptr);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("workspace"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace ite::kernels

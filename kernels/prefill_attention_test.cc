// PrefillAttention against cpu::PagedAttention: variable-length batches with cached prefixes,
// GQA ratios 1/4/7/8, head_dim 64/128, f16/bf16, lengths off the 64-row tile grid, odd block
// sizes. Cache slots outside every sequence hold NaN, so an out-of-range read shows.
#include <cstdio>

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
  int32_t batch, max_q, max_prefix, heads, kv_heads, head_dim, block_size;
};

const char* KernelName(PrefillKernel k) {
  return k == PrefillKernel::kWgmma ? "wgmma" : k == PrefillKernel::kMmaSync ? "mma.sync" : "auto";
}

// Both kernels where this device runs both (the wgmma one needs an sm_90 card).
std::vector<PrefillKernel> KernelsHere() {
  std::vector<PrefillKernel> kernels = {PrefillKernel::kMmaSync};
  if (PrefillWgmmaAvailable()) {
    kernels.push_back(PrefillKernel::kWgmma);
  } else {
    std::printf("note: no sm_90 device (or no sm_90a code): the wgmma kernel is not tested\n");
  }
  return kernels;
}

void RunCase(const Case& c, DType dtype, std::mt19937& rng, PrefillKernel kernel) {
  SCOPED_TRACE(::testing::Message()
               << KernelName(kernel) << " " << DTypeName(dtype) << " batch=" << c.batch
               << " max_q=" << c.max_q << " max_prefix=" << c.max_prefix << " heads=" << c.heads
               << "/" << c.kv_heads << " hd=" << c.head_dim << " bs=" << c.block_size);
  std::uniform_int_distribution<int32_t> qd(1, c.max_q), pd(0, c.max_prefix);
  std::vector<int32_t> q_lens(c.batch), kv_lens(c.batch), cu = {0};
  int32_t max_q_len = 0;
  for (int32_t b = 0; b < c.batch; ++b) {
    q_lens[b] = b == 0 ? c.max_q : qd(rng);  // one sequence at the maximum
    kv_lens[b] = q_lens[b] + (b == 0 ? c.max_prefix : pd(rng));
    cu.push_back(cu.back() + q_lens[b]);
    max_q_len = std::max(max_q_len, q_lens[b]);
  }
  testing::RandomPagedCache cache =
      testing::MakeRandomPagedCache(kv_lens, c.block_size, c.kv_heads, c.head_dim, dtype, rng);
  const size_t row = size_t(c.heads) * c.head_dim;
  std::vector<float> q = testing::RandomVector(size_t(cu.back()) * row, rng, -2.0f, 2.0f);
  RoundTo(q, dtype);
  const float scale = 1.0f / std::sqrt(float(c.head_dim));

  std::vector<float> ref(q.size());
  cpu::PagedKv view{cache.k.data(),   cache.v.data(),     cache.num_blocks,
                    cache.block_size, cache.num_kv_heads, cache.head_dim};
  for (int32_t b = 0; b < c.batch; ++b) {
    std::span<const int32_t> table(cache.block_tables.data() + size_t(b) * cache.max_blocks_per_seq,
                                   (kv_lens[b] + c.block_size - 1) / c.block_size);
    cpu::PagedAttention(view, table, kv_lens[b] - q_lens[b], q.data() + size_t(cu[b]) * row,
                        q_lens[b], c.heads, scale, ref.data() + size_t(cu[b]) * row);
  }

  auto dq = Upload16(q, dtype);
  auto dcu = UploadRaw(cu), dkv = UploadRaw(kv_lens), dbt = UploadRaw(cache.block_tables);
  DeviceBuffer dout(q.size() * 2);
  dout.Poison();
  PrefillAttentionArgs args;
  args.q = dq.get();
  args.out = dout.get();
  args.cache = cache.View();
  args.cu_seqlens_q = dcu.as<int32_t>();
  args.kv_lens = dkv.as<int32_t>();
  args.block_tables = dbt.as<int32_t>();
  args.max_blocks_per_seq = cache.max_blocks_per_seq;
  args.batch = c.batch;
  args.max_q_len = max_q_len;
  args.num_heads = c.heads;
  args.scale = scale;
  args.kernel = kernel;
  const Status st = PrefillAttention(args, nullptr);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ITE_CUDA_OK(cudaDeviceSynchronize());
  std::vector<float> out = Download16(dout, q.size(), dtype);
  EXPECT_EQ(testing::CountNonFinite(out), 0u);
  EXPECT_LT(RelError(out, ref), Tolerance(dtype));
}

TEST(PrefillAttentionKernel, MatchesCpuReference) {
  ITE_SKIP_WITHOUT_GPU();
  const Case cases[] = {
      {1, 1, 0, 8, 8, 64, 16},         // a single token
      {1, 200, 0, 32, 8, 128, 16},     // plain prompt, GQA 4
      {3, 100, 300, 28, 4, 128, 16},   // cached prefixes, GQA 7
      {5, 70, 130, 16, 2, 64, 7},      // GQA 8, block size not a power of two
      {16, 65, 0, 8, 8, 128, 32},      // lengths just past a tile
      {64, 40, 100, 8, 1, 64, 16},     // wide batch, MQA-like ratio 8
      {2, 577, 63, 16, 4, 128, 16},    // several tiles, prefix off the tile grid
      {2, 300, 1000, 32, 8, 128, 16},  // long cached prefix, several 128-row query blocks
      {3, 260, 700, 8, 2, 64, 16},     // the same at head_dim 64
  };
  for (PrefillKernel kernel : KernelsHere()) {
    std::mt19937 rng(12);
    for (DType dtype : {DType::kBF16, DType::kF16}) {
      for (const Case& c : cases) RunCase(c, dtype, rng, kernel);
    }
  }
}

TEST(PrefillAttentionKernel, LongPrompt) {
  ITE_SKIP_WITHOUT_GPU();
  for (PrefillKernel kernel : KernelsHere()) {
    std::mt19937 rng(13);
    RunCase({1, 1500, 0, 8, 2, 128, 16}, DType::kBF16, rng, kernel);
  }
}

// Arguments of one 1-token sequence whose pointers all name `dummy`: for the checks that fail
// before anything runs.
PrefillAttentionArgs DummyArgs(int* dummy, int32_t head_dim) {
  PrefillAttentionArgs args;
  args.q = args.out = dummy;
  args.cu_seqlens_q = args.kv_lens = args.block_tables = dummy;
  args.cache = PagedKvCache{dummy, dummy, DType::kBF16, 1, 16, 1, head_dim};
  args.num_heads = 1;
  args.batch = 1;
  args.max_q_len = 1;
  args.max_blocks_per_seq = 1;
  return args;
}

TEST(PrefillAttentionKernel, WgmmaWhereUnavailableIsAnError) {
  if (PrefillWgmmaAvailable()) GTEST_SKIP() << "this device runs the wgmma kernel";
  int dummy = 0;
  PrefillAttentionArgs args = DummyArgs(&dummy, 128);
  args.kernel = PrefillKernel::kWgmma;
  const Status st = PrefillAttention(args, nullptr);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("sm_90"), std::string::npos) << st.message();
}

TEST(PrefillAttentionKernel, RejectsUnsupportedHeadDim) {
  int dummy = 0;
  const PrefillAttentionArgs args = DummyArgs(&dummy, 96);
  const Status st = PrefillAttention(args, nullptr);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("head_dim 96"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace ite::kernels

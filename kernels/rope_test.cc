// RopeKvWrite against cpu::Rope + placing K/V at their slots, on random inputs and positions,
// with Llama-3 frequency scaling.
#include "ite/kernels/rope.h"

#include "test_util.h"
#include "worker/backend/cpu/cpu_ops.h"

namespace ite::kernels {
namespace {

using testing::DeviceBuffer;
using testing::Download16;
using testing::RandomVector;
using testing::RelError;
using testing::RoundTo;
using testing::Tolerance;
using testing::Upload16;
using testing::UploadRaw;

struct Case {
  int32_t tokens, heads, kv_heads, head_dim;
  bool llama3;
};

TEST(RopeKernel, RotatesQAndWritesPagedKv) {
  ITE_SKIP_WITHOUT_GPU();
  const Case cases[] = {{1, 8, 8, 64, false},
                        {13, 32, 8, 128, true},
                        {64, 28, 4, 128, true},
                        {37, 16, 2, 64, false},
                        {5, 7, 1, 128, true}};
  std::mt19937 rng(3);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " tokens=" << c.tokens << " heads="
                                        << c.heads << "/" << c.kv_heads << " hd=" << c.head_dim);
      ModelConfig config;
      config.head_dim = c.head_dim;
      config.rope_theta = 500000.0f;
      if (c.llama3) {
        config.rope_scaling.type = "llama3";
        config.rope_scaling.factor = 8.0f;
        config.rope_scaling.low_freq_factor = 1.0f;
        config.rope_scaling.high_freq_factor = 4.0f;
        config.rope_scaling.original_max_position = 8192;
      }
      const std::vector<float> inv_freq = cpu::RopeInvFreq(config);
      const int32_t width = (c.heads + 2 * c.kv_heads) * c.head_dim;
      std::vector<float> qkv = RandomVector(size_t(c.tokens) * width, rng, -2.0f, 2.0f);
      RoundTo(qkv, dtype);
      const int32_t block_size = 16, num_blocks = 8;
      const int32_t num_slots = block_size * num_blocks;
      std::vector<int32_t> positions(c.tokens), slots(c.tokens);
      std::uniform_int_distribution<int32_t> pos_dist(0, 32767);
      std::vector<int32_t> all_slots(num_slots);
      for (int32_t i = 0; i < num_slots; ++i) all_slots[i] = i;
      std::shuffle(all_slots.begin(), all_slots.end(), rng);
      for (int32_t t = 0; t < c.tokens; ++t) {
        positions[t] = pos_dist(rng);
        slots[t] = all_slots[t];
      }
      if (c.tokens > 2) slots[1] = -1;  // a padding token: no cache write

      // Reference: split q / k / v, rotate with the CPU op, place k / v at their slots.
      const int32_t qd = c.heads * c.head_dim, kd = c.kv_heads * c.head_dim;
      std::vector<float> q(size_t(c.tokens) * qd), k(size_t(c.tokens) * kd), v(k.size());
      for (int32_t t = 0; t < c.tokens; ++t) {
        const float* row = qkv.data() + size_t(t) * width;
        std::copy(row, row + qd, q.begin() + size_t(t) * qd);
        std::copy(row + qd, row + qd + kd, k.begin() + size_t(t) * kd);
        std::copy(row + qd + kd, row + width, v.begin() + size_t(t) * kd);
      }
      cpu::Rope(q.data(), k.data(), positions, c.heads, c.kv_heads, c.head_dim, inv_freq);

      auto dqkv = Upload16(qkv, dtype);
      auto dpos = UploadRaw(positions), dslots = UploadRaw(slots), dfreq = UploadRaw(inv_freq);
      DeviceBuffer dk(size_t(num_slots) * kd * 2), dv(size_t(num_slots) * kd * 2);
      dk.Poison();
      dv.Poison();
      RopeKvWriteArgs args;
      args.qkv = dqkv.get();
      args.positions = dpos.as<int32_t>();
      args.slots = dslots.as<int32_t>();
      args.inv_freq = dfreq.as<float>();
      args.num_tokens = c.tokens;
      args.num_heads = c.heads;
      args.num_kv_heads = c.kv_heads;
      args.head_dim = c.head_dim;
      args.cache =
          PagedKvCache{dk.get(), dv.get(), dtype, num_blocks, block_size, c.kv_heads, c.head_dim};
      const Status st = RopeKvWrite(args, nullptr);
      ASSERT_TRUE(st.ok()) << st.ToString();
      ITE_CUDA_OK(cudaDeviceSynchronize());

      std::vector<float> out_qkv = Download16(dqkv, qkv.size(), dtype);
      std::vector<float> out_k = Download16(dk, size_t(num_slots) * kd, dtype);
      std::vector<float> out_v = Download16(dv, size_t(num_slots) * kd, dtype);
      std::vector<float> got_q, got_k, got_v, want_k, want_v;
      for (int32_t t = 0; t < c.tokens; ++t) {
        got_q.insert(got_q.end(), out_qkv.begin() + size_t(t) * width,
                     out_qkv.begin() + size_t(t) * width + qd);
        // V and the unrotated K in qkv stay as they were.
        for (int32_t i = qd; i < width; ++i) {
          ASSERT_EQ(out_qkv[size_t(t) * width + i], qkv[size_t(t) * width + i]);
        }
        if (slots[t] < 0) continue;
        got_k.insert(got_k.end(), out_k.begin() + size_t(slots[t]) * kd,
                     out_k.begin() + size_t(slots[t] + 1) * kd);
        got_v.insert(got_v.end(), out_v.begin() + size_t(slots[t]) * kd,
                     out_v.begin() + size_t(slots[t] + 1) * kd);
        want_k.insert(want_k.end(), k.begin() + size_t(t) * kd, k.begin() + size_t(t + 1) * kd);
        want_v.insert(want_v.end(), v.begin() + size_t(t) * kd, v.begin() + size_t(t + 1) * kd);
      }
      EXPECT_EQ(testing::CountNonFinite(got_q) + testing::CountNonFinite(got_k), 0u);
      EXPECT_LT(RelError(got_q, q), Tolerance(dtype));
      EXPECT_LT(RelError(got_k, want_k), Tolerance(dtype));
      EXPECT_EQ(RelError(got_v, want_v), 0.0);
      // Slots nobody wrote are still poisoned: the kernel wrote nowhere else.
      size_t written = 0;
      for (float x : out_k) written += std::isfinite(x);
      EXPECT_EQ(written, got_k.size());
    }
  }
}

TEST(RopeKernel, RejectsBadHeadDim) {
  int dummy = 0;
  RopeKvWriteArgs args;
  args.qkv = &dummy;
  args.positions = &dummy;
  args.slots = &dummy;
  args.inv_freq = reinterpret_cast<const float*>(&dummy);
  args.num_tokens = 1;
  args.num_heads = 2;
  args.num_kv_heads = 1;
  args.head_dim = 40;
  args.cache = PagedKvCache{&dummy, &dummy, DType::kBF16, 1, 16, 1, 40};
  const Status st = RopeKvWrite(args, nullptr);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("head_dim"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace ite::kernels

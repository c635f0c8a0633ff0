// Device sampling and penalties against plain CPU references written here: argmax and its
// logprob, membership of every draw in the reference kept set (top-k, top-p, min-p at the
// request's temperature), the empirical distribution of many draws, and seed determinism.
#include "ite/kernels/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "test_util.h"

namespace ite::kernels {
namespace {

using testing::DeviceBuffer;
using testing::DownloadRaw;
using testing::UploadRaw;

struct RowParams {
  float temperature = 1.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  uint64_t seed = 0;
  uint64_t step = 0;
};

// Probabilities of the kept tokens (others 0), HF order: temperature, top-k, top-p, min-p.
// top_p_slack widens the top-p set a little so a draw at the float boundary is not a failure.
std::vector<double> KeptProbs(const float* x, int32_t vocab, const RowParams& p,
                              double top_p_slack) {
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
  const double xmax = x[order[0]];
  std::vector<double> w(vocab);
  for (int32_t i = 0; i < vocab; ++i) w[i] = std::exp((double(x[i]) - xmax) / p.temperature);
  int32_t keep = vocab;
  if (p.top_k > 0 && p.top_k < vocab) {
    keep = p.top_k;
    while (keep < vocab && x[order[keep]] == x[order[keep - 1]]) ++keep;  // ties stay
  }
  if (p.top_p < 1.0f) {
    double z = 0.0;
    for (int32_t i = 0; i < keep; ++i) z += w[order[i]];
    double acc = 0.0;
    int32_t n = 0;
    while (n < keep) {
      acc += w[order[n]];
      ++n;
      if (acc >= (double(p.top_p) + top_p_slack) * z) break;
    }
    keep = n;
  }
  std::vector<double> probs(vocab, 0.0);
  double z = 0.0;
  for (int32_t i = 0; i < keep; ++i) {
    const int32_t t = order[i];
    if (p.min_p > 0.0f && w[t] < p.min_p) continue;  // w[t] = p_t / p_max
    probs[t] = w[t];
    z += w[t];
  }
  for (double& q : probs) q /= z;
  return probs;
}

struct SampleRun {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};

SampleRun RunSample(const std::vector<float>& logits, int32_t vocab,
                    const std::vector<RowParams>& params) {
  const int32_t batch = static_cast<int32_t>(params.size());
  std::vector<float> temp, top_p, min_p;
  std::vector<int32_t> top_k;
  std::vector<uint64_t> seeds, steps;
  for (const RowParams& p : params) {
    temp.push_back(p.temperature);
    top_k.push_back(p.top_k);
    top_p.push_back(p.top_p);
    min_p.push_back(p.min_p);
    seeds.push_back(p.seed);
    steps.push_back(p.step);
  }
  auto dl = UploadRaw(logits), dt = UploadRaw(temp), dk = UploadRaw(top_k), dp = UploadRaw(top_p),
       dm = UploadRaw(min_p), ds = UploadRaw(seeds), dst = UploadRaw(steps);
  DeviceBuffer dtok(batch * 4), dlp(batch * 4);
  dtok.Poison();
  dlp.Poison();
  SamplingArgs args;
  args.logits = dl.as<float>();
  args.batch = batch;
  args.vocab = vocab;
  args.temperature = dt.as<float>();
  args.top_k = dk.as<int32_t>();
  args.top_p = dp.as<float>();
  args.min_p = dm.as<float>();
  args.seeds = ds.as<uint64_t>();
  args.steps = dst.as<uint64_t>();
  args.tokens = dtok.as<int32_t>();
  args.logprobs = dlp.as<float>();
  const Status st = Sample(args, nullptr);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return {DownloadRaw<int32_t>(dtok, batch), DownloadRaw<float>(dlp, batch)};
}

std::vector<float> RandomLogits(int32_t batch, int32_t vocab, float scale, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> x(size_t(batch) * vocab);
  for (float& v : x) v = dist(rng);
  return x;
}

double LogSoftmaxAt(const float* x, int32_t vocab, int32_t token) {
  double m = *std::max_element(x, x + vocab), z = 0.0;
  for (int32_t i = 0; i < vocab; ++i) z += std::exp(double(x[i]) - m);
  return double(x[token]) - m - std::log(z);
}

// Lowest index of the largest entry, NaN entries skipped; 0 where nothing beats -inf.
int32_t ReferenceArgmax(const float* x, int32_t vocab) {
  int32_t best = 0;
  float best_x = -INFINITY;
  for (int32_t i = 0; i < vocab; ++i) {
    if (x[i] > best_x) {
      best_x = x[i];
      best = i;
    }
  }
  return best;
}

struct ArgmaxRun {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};

ArgmaxRun RunArgmax(const std::vector<float>& x, int32_t batch, int32_t vocab) {
  auto dx = UploadRaw(x);
  DeviceBuffer dtok(batch * 4), dlp(batch * 4);
  dtok.Poison();
  dlp.Poison();
  const Status st =
      Argmax(dx.as<float>(), batch, vocab, dtok.as<int32_t>(), dlp.as<float>(), nullptr);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return {DownloadRaw<int32_t>(dtok, batch), DownloadRaw<float>(dlp, batch)};
}

// Greedy decoding through Sample (temperature 0): the same tokens and logprobs as Argmax.
SampleRun RunGreedy(const std::vector<float>& x, int32_t batch, int32_t vocab) {
  std::vector<RowParams> greedy(batch);
  for (auto& p : greedy) p.temperature = 0.0f;
  return RunSample(x, vocab, greedy);
}

// Vocab sizes reach every Argmax path: one block per row (up to 8192 here), a cluster of 2 to 8
// blocks per row on sm_90 (one block per row with 1024 threads elsewhere), and odd widths, whose
// rows start at every alignment mod 16 bytes and so have 0-3 scalar entries at each end.
TEST(SamplingKernel, ArgmaxAndLogprob) {
  ITE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(8);
  for (int32_t vocab : {1, 3, 50, 1000, 8195, 50257, 128256}) {
    SCOPED_TRACE(::testing::Message() << "vocab " << vocab);
    const int32_t batch = 64;
    std::vector<float> x = RandomLogits(batch, vocab, 3.0f, rng);
    const ArgmaxRun a = RunArgmax(x, batch, vocab);
    const SampleRun g = RunGreedy(x, batch, vocab);
    for (int32_t b = 0; b < batch; ++b) {
      const float* row = x.data() + size_t(b) * vocab;
      const int32_t want = int32_t(std::max_element(row, row + vocab) - row);
      EXPECT_EQ(a.tokens[b], want) << "row " << b;
      EXPECT_EQ(g.tokens[b], want) << "row " << b;
      EXPECT_NEAR(a.logprobs[b], LogSoftmaxAt(row, vocab, want), 1e-3) << "row " << b;
      EXPECT_NEAR(g.logprobs[b], LogSoftmaxAt(row, vocab, want), 1e-3) << "row " << b;
    }
  }
}

// Equal maxima: the lowest index wins, wherever the copies fall (the scalar head and tail of a
// row, different threads, different blocks of a cluster), and in a row of one repeated value.
TEST(SamplingKernel, ArgmaxTiesTakeTheLowestIndex) {
  ITE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(12);
  for (int32_t vocab : {3, 1000, 50257, 128256}) {
    SCOPED_TRACE(::testing::Message() << "vocab " << vocab);
    const int32_t batch = 32;
    std::vector<float> x = RandomLogits(batch, vocab, 3.0f, rng);
    std::uniform_int_distribution<int32_t> pos(0, vocab - 1);
    for (int32_t b = 0; b < batch; ++b) {
      float* row = x.data() + size_t(b) * vocab;
      switch (b % 4) {
        case 0:  // a few copies anywhere
          for (int k = 0; k < 4; ++k) row[pos(rng)] = 50.0f;
          break;
        case 1:  // the last two entries (the tail of odd-width rows)
          row[vocab - 1] = 50.0f;
          row[std::max(0, vocab - 2)] = 50.0f;
          break;
        case 2:  // every entry
          std::fill(row, row + vocab, 1.5f);
          break;
        default:  // among the first four (the head) and one far away
          row[std::min(vocab - 1, 3)] = 50.0f;
          row[std::min(vocab - 1, 1)] = 50.0f;
          row[pos(rng)] = 50.0f;
          break;
      }
    }
    const ArgmaxRun a = RunArgmax(x, batch, vocab);
    const SampleRun g = RunGreedy(x, batch, vocab);
    for (int32_t b = 0; b < batch; ++b) {
      const float* row = x.data() + size_t(b) * vocab;
      const int32_t want = ReferenceArgmax(row, vocab);
      EXPECT_EQ(a.tokens[b], want) << "row " << b;
      EXPECT_EQ(g.tokens[b], want) << "row " << b;
      EXPECT_NEAR(a.logprobs[b], LogSoftmaxAt(row, vocab, want), 1e-3) << "row " << b;
    }
  }
}

// -inf entries count for nothing, also in blocks that see only -inf and at a row max far below
// 0. NaN entries are never the argmax but make the logprob NaN; +inf is the argmax (first copy)
// with a NaN logprob; a row of only -inf gives token 0 and a NaN logprob. Sample agrees.
TEST(SamplingKernel, ArgmaxSpecialValues) {
  ITE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(13);
  for (int32_t vocab : {1000, 50257, 128256}) {
    SCOPED_TRACE(::testing::Message() << "vocab " << vocab);
    constexpr int32_t kRows = 5;
    std::vector<float> x = RandomLogits(kRows, vocab, 3.0f, rng);
    auto row = [&](int32_t r) { return x.data() + size_t(r) * vocab; };
    std::uniform_int_distribution<int32_t> pos(0, vocab - 1);
    for (int32_t i = 0; i < vocab; ++i) {
      row(1)[i] -= 200.0f;
      for (int32_t r : {0, 1}) {
        if (i < vocab / 2 || rng() % 4 == 0) row(r)[i] = -INFINITY;
      }
      row(4)[i] = -INFINITY;
    }
    row(0)[vocab - 1] = 1.0f;  // at least one finite entry
    row(1)[vocab - 1] = -199.0f;
    row(2)[pos(rng)] = NAN;
    const int32_t inf_at = pos(rng);
    row(3)[inf_at] = INFINITY;
    row(3)[std::min(vocab - 1, inf_at + 7)] = INFINITY;
    const ArgmaxRun a = RunArgmax(x, kRows, vocab);
    const SampleRun g = RunGreedy(x, kRows, vocab);
    for (int32_t r = 0; r < kRows; ++r) {
      const int32_t want = ReferenceArgmax(row(r), vocab);
      EXPECT_EQ(a.tokens[r], want) << "row " << r;
      EXPECT_EQ(g.tokens[r], want) << "row " << r;
      if (r <= 1) {
        EXPECT_NEAR(a.logprobs[r], LogSoftmaxAt(row(r), vocab, want), 1e-3) << "row " << r;
        EXPECT_NEAR(g.logprobs[r], LogSoftmaxAt(row(r), vocab, want), 1e-3) << "row " << r;
      } else {
        EXPECT_TRUE(std::isnan(a.logprobs[r])) << "row " << r << ": " << a.logprobs[r];
        EXPECT_TRUE(std::isnan(g.logprobs[r])) << "row " << r << ": " << g.logprobs[r];
      }
    }
    EXPECT_EQ(a.tokens[3], inf_at);
    EXPECT_EQ(a.tokens[4], 0);
  }
}

TEST(SamplingKernel, DrawsStayInTheKeptSet) {
  ITE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(9);
  const int32_t vocab = 32000, batch = 64;
  const float temps[] = {0.5f, 1.0f, 1.5f};
  const int32_t top_ks[] = {0, 5, 50, 1000};
  const float top_ps[] = {1.0f, 0.9f, 0.5f};
  const float min_ps[] = {0.0f, 0.05f};
  for (int round = 0; round < 4; ++round) {
    std::vector<float> x = RandomLogits(batch, vocab, 2.0f, rng);
    std::vector<RowParams> params(batch);
    for (int32_t b = 0; b < batch; ++b) {
      params[b].temperature = temps[rng() % 3];
      params[b].top_k = top_ks[rng() % 4];
      params[b].top_p = top_ps[rng() % 3];
      params[b].min_p = min_ps[rng() % 2];
      params[b].seed = rng();
      params[b].step = rng() % 100;
    }
    SampleRun r = RunSample(x, vocab, params);
    for (int32_t b = 0; b < batch; ++b) {
      const float* row = x.data() + size_t(b) * vocab;
      ASSERT_GE(r.tokens[b], 0);
      ASSERT_LT(r.tokens[b], vocab);
      const std::vector<double> kept = KeptProbs(row, vocab, params[b], 1e-4);
      EXPECT_GT(kept[r.tokens[b]], 0.0)
          << "row " << b << " T=" << params[b].temperature << " k=" << params[b].top_k
          << " p=" << params[b].top_p << " min_p=" << params[b].min_p;
      EXPECT_NEAR(r.logprobs[b], LogSoftmaxAt(row, vocab, r.tokens[b]), 1e-3);
    }
    // Same seeds and steps, rows in reverse order: every request draws the same token.
    std::vector<RowParams> rev(params.rbegin(), params.rend());
    std::vector<float> xrev;
    for (int32_t b = batch - 1; b >= 0; --b) {
      xrev.insert(xrev.end(), x.begin() + size_t(b) * vocab, x.begin() + size_t(b + 1) * vocab);
    }
    SampleRun r2 = RunSample(xrev, vocab, rev);
    for (int32_t b = 0; b < batch; ++b) EXPECT_EQ(r2.tokens[batch - 1 - b], r.tokens[b]);
  }
}

TEST(SamplingKernel, EmpiricalDistributionMatches) {
  ITE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(10);
  const int32_t vocab = 16, draws = 40000;
  std::vector<float> one = RandomLogits(1, vocab, 1.5f, rng);
  RowParams base;
  base.temperature = 0.8f;
  base.top_k = 10;
  base.top_p = 0.9f;
  base.seed = 1234;
  const std::vector<double> want = KeptProbs(one.data(), vocab, base, 0.0);
  std::vector<float> x;
  std::vector<RowParams> params(draws, base);
  for (int32_t i = 0; i < draws; ++i) {
    x.insert(x.end(), one.begin(), one.end());
    params[i].step = uint64_t(i);
  }
  SampleRun r = RunSample(x, vocab, params);
  std::vector<double> freq(vocab, 0.0);
  for (int32_t t : r.tokens) {
    ASSERT_GE(t, 0);
    ASSERT_LT(t, vocab);
    freq[t] += 1.0 / draws;
  }
  for (int32_t t = 0; t < vocab; ++t) {
    if (want[t] == 0.0) {
      EXPECT_EQ(freq[t], 0.0) << "token " << t << " is outside the kept set";
    } else {
      // 4.5 standard deviations of a binomial proportion.
      const double sd = std::sqrt(want[t] * (1 - want[t]) / draws);
      EXPECT_NEAR(freq[t], want[t], 4.5 * sd + 1e-4) << "token " << t;
    }
  }
}

TEST(SamplingKernel, PenaltiesMatchReference) {
  ITE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(11);
  const int32_t vocab = 1000, batch = 8;
  std::vector<float> x = RandomLogits(batch, vocab, 2.0f, rng);
  std::vector<int32_t> ids, counts, offsets = {0};
  std::vector<float> rep, pres, freq;
  for (int32_t b = 0; b < batch; ++b) {
    std::vector<int32_t> toks(vocab);
    std::iota(toks.begin(), toks.end(), 0);
    std::shuffle(toks.begin(), toks.end(), rng);
    const int32_t n = int32_t(rng() % 200);
    for (int32_t i = 0; i < n; ++i) {
      ids.push_back(toks[i]);
      counts.push_back(int32_t(rng() % 4));
    }
    offsets.push_back(int32_t(ids.size()));
    rep.push_back(b % 2 ? 1.3f : 1.0f);
    pres.push_back(b % 3 ? 0.5f : 0.0f);
    freq.push_back(b % 4 ? 0.25f : 0.0f);
  }
  std::vector<float> ref = x;
  for (int32_t b = 0; b < batch; ++b) {
    for (int32_t e = offsets[b]; e < offsets[b + 1]; ++e) {
      float& v = ref[size_t(b) * vocab + ids[e]];
      if (rep[b] != 1.0f) v = v > 0.0f ? v / rep[b] : v * rep[b];
      if (counts[e] > 0) v -= pres[b] + freq[b] * float(counts[e]);
    }
  }
  auto dx = UploadRaw(x), di = UploadRaw(ids), dc = UploadRaw(counts), doff = UploadRaw(offsets),
       dr = UploadRaw(rep), dp = UploadRaw(pres), df = UploadRaw(freq);
  PenaltyArgs args{
      dx.as<float>(),     batch,          vocab,          di.as<int32_t>(), dc.as<int32_t>(),
      doff.as<int32_t>(), dr.as<float>(), dp.as<float>(), df.as<float>()};
  ASSERT_TRUE(ApplyPenalties(args, nullptr).ok());
  ITE_CUDA_OK(cudaDeviceSynchronize());
  std::vector<float> out = DownloadRaw<float>(dx, x.size());
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 1e-5f) << "index " << i;
}

}  // namespace
}  // namespace ite::kernels

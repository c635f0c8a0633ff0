#include "worker/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace ite {

SequenceSampler::SequenceSampler(const SamplingParams& params,
                                 std::span<const int32_t> context_tokens, int32_t generated)
    : params_(params) {
  if (params_.has_seed) {
    rng_.seed(params_.seed);
    // One draw per non-greedy token (Draw takes it first thing).
    if (!params_.greedy() && generated > 0) rng_.discard(generated);
  } else {
    std::random_device rd;
    rng_.seed((static_cast<uint64_t>(rd()) << 32) ^ rd());
  }
  if (params_.repetition_penalty != 1.0f) {
    seen_.insert(context_tokens.begin(), context_tokens.end());
  }
  generated = std::clamp<int32_t>(generated, 0, static_cast<int32_t>(context_tokens.size()));
  for (int32_t t : context_tokens.last(generated)) ++generated_[t];
}

void SequenceSampler::Accept(int32_t token) {
  if (params_.repetition_penalty != 1.0f) seen_.insert(token);
  ++generated_[token];
}

void SequenceSampler::ApplyPenalties(std::vector<float>* x) const {
  const int64_t vocab = static_cast<int64_t>(x->size());
  const float r = params_.repetition_penalty;
  if (r != 1.0f) {
    for (int32_t t : seen_) {
      if (t < 0 || t >= vocab) continue;
      float& v = (*x)[t];
      // A tiny penalty can push v / r past the float range; inf would turn softmax into NaN.
      v = v > 0.0f ? std::min(v / r, std::numeric_limits<float>::max()) : v * r;
    }
  }
  if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) {
    for (auto [t, count] : generated_) {
      if (t < 0 || t >= vocab) continue;
      (*x)[t] -= params_.presence_penalty + params_.frequency_penalty * static_cast<float>(count);
    }
  }
}

int32_t SequenceSampler::Draw(const std::vector<float>& x) {
  // Exactly one draw per call, taken first (a resumed sequence skips one per generated token).
  const uint64_t bits = rng_();
  const int32_t vocab = static_cast<int32_t>(x.size());
  auto better = [&x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
  order_.resize(vocab);
  std::iota(order_.begin(), order_.end(), 0);
  const float mx = *std::max_element(x.begin(), x.end());
  if (!std::isfinite(mx)) {  // every logit -inf (or a +inf): fall back to the best one
    return *std::min_element(order_.begin(), order_.end(), better);
  }
  double total = 0.0;  // unnormalised mass of the candidates top-p is measured against
  if (params_.top_k > 0 && params_.top_k < vocab) {
    std::nth_element(order_.begin(), order_.begin() + params_.top_k, order_.end(), better);
    order_.resize(params_.top_k);
    std::sort(order_.begin(), order_.end(), better);
    for (int32_t t : order_) total += std::exp(x[t] - mx);
  } else if (params_.top_p < 1.0f) {
    // Only the most likely tokens can be in the nucleus: sort a growing best-first prefix until
    // it holds top_p of the whole mass, instead of sorting the whole vocabulary every token.
    for (float v : x) total += std::exp(v - mx);
    const double limit = static_cast<double>(params_.top_p) * total;
    size_t k = std::min<size_t>(64, order_.size());
    while (true) {
      if (k < order_.size())
        std::nth_element(order_.begin(), order_.begin() + k, order_.end(), better);
      std::sort(order_.begin(), order_.begin() + k, better);
      double mass = 0.0;
      for (size_t i = 0; i < k; ++i) mass += std::exp(x[order_[i]] - mx);
      if (mass >= limit || k == order_.size()) break;
      k = std::min(order_.size(), 4 * k);
    }
    order_.resize(k);
  } else {
    for (float v : x) total += std::exp(v - mx);
  }
  probs_.resize(order_.size());
  for (size_t i = 0; i < order_.size(); ++i) probs_[i] = std::exp(x[order_[i]] - mx);
  size_t keep = order_.size();
  if (params_.top_p < 1.0f) {
    // Keep tokens while the mass before them is below top_p: the smallest prefix reaching it.
    double before = 0.0;
    double limit = static_cast<double>(params_.top_p) * total;
    size_t i = 0;
    for (; i < order_.size() && (i == 0 || before < limit); ++i) before += probs_[i];
    keep = i;
  }
  // min-p relative to the most likely token, whose unnormalised probability is exp(0) = 1.
  double kept_total = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    if (probs_[i] < params_.min_p) probs_[i] = 0.0f;
    kept_total += probs_[i];
  }
  // 53 random bits -> [0, 1): the same stream gives the same tokens on every platform.
  double u = static_cast<double>(bits >> 11) * 0x1.0p-53 * kept_total;
  double acc = 0.0;
  int32_t last = order_[0];
  for (size_t i = 0; i < keep; ++i) {
    if (probs_[i] == 0.0f) continue;
    acc += probs_[i];
    last = order_[i];
    if (u < acc) return order_[i];
  }
  return last;  // rounding left u at the very top
}

void FillLogprobs(std::span<const float> x, int32_t top_n, SampleResult* result,
                  std::vector<int32_t>* scratch) {
  const float mx = *std::max_element(x.begin(), x.end());
  double z = 0.0;
  for (float v : x) z += std::exp(static_cast<double>(v - mx));
  const float log_z = mx + static_cast<float>(std::log(z));
  result->logprob = x[result->token] - log_z;
  const int32_t n = std::min<int32_t>(top_n, static_cast<int32_t>(x.size()));
  result->top.clear();
  if (n <= 0) return;
  std::vector<int32_t>& order = *scratch;
  order.resize(x.size());
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + n, order.end(),
                    [&](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
  for (int32_t i = 0; i < n; ++i) result->top.push_back({order[i], x[order[i]] - log_z});
}

SampleResult SequenceSampler::Sample(std::span<const float> logits) {
  work_.assign(logits.begin(), logits.end());
  constexpr float kMax = std::numeric_limits<float>::max();
  float max_abs = 0.0f;  // the largest finite magnitude, to know whether scaling overflows
  for (float& v : work_) {
    // NaN is never chosen and +inf is the largest float: a softmax over them stays finite.
    if (std::isnan(v)) v = -INFINITY;
    if (v == INFINITY) v = kMax;
  }
  ApplyPenalties(&work_);
  for (float v : work_)
    if (v != -INFINITY) max_abs = std::max(max_abs, std::fabs(v));
  const float inv = 1.0f / params_.temperature;
  // Scaling that would overflow picks the argmax anyway (every other token's weight is 0), so it
  // is greedy, logprobs included, rather than inf - inf = NaN.
  const bool greedy = params_.greedy() || !(max_abs * inv <= kMax);
  if (!greedy && params_.temperature != 1.0f) {
    for (float& v : work_) v *= inv;
  }
  if (greedy && !params_.greedy()) rng_();  // the draw Draw would take, so a resume skips it

  SampleResult result;
  if (greedy) {
    result.token = static_cast<int32_t>(std::max_element(work_.begin(), work_.end()) -
                                        work_.begin());  // first maximum: lowest id on ties
  } else {
    result.token = Draw(work_);
  }

  if (params_.logprobs || params_.top_logprobs > 0) {
    FillLogprobs(work_, params_.top_logprobs, &result, &order_);
  }
  Accept(result.token);
  return result;
}

}  // namespace ite

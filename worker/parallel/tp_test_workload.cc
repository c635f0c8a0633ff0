#include "worker/parallel/tp_test_workload.h"

#include <thread>

namespace ite::testing {

StatusOr<Trace> RunWorkload(Backend* b) {
  const std::vector<int32_t> a = {5, 17, 3, 60, 0, 44, 12}, c = {9, 1, 33, 2, 7};
  const std::vector<int32_t> table_a = {0, 1, 2, 3}, table_c = {4, 5, 6, 7};
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  ITE_RETURN_IF_ERROR(b->AddSequence(1, greedy, a, 0));
  ITE_RETURN_IF_ERROR(b->AddSequence(2, greedy, c, 0));
  Trace t;
  auto run = [&](const ForwardBatch& batch) -> Status {
    ITE_ASSIGN_OR_RETURN(ForwardOutput out, b->Run(batch));
    t.logits.insert(t.logits.end(), out.logits.begin(), out.logits.end());
    for (const SampleResult& s : out.samples) t.tokens.push_back(s.token);
    return Status::Ok();
  };
  ForwardBatch prefill;
  prefill.chunks.push_back({1, a, 0, table_a, true, LogitsMode::kAll});
  prefill.chunks.push_back({2, c, 0, table_c, true, LogitsMode::kLast});
  ITE_RETURN_IF_ERROR(run(prefill));
  for (int i = 0; i < kWorkloadDecodeSteps; ++i) {
    ForwardBatch decode;
    decode.chunks.push_back(
        {1, {}, static_cast<int32_t>(a.size()) + i, table_a, true, LogitsMode::kLast});
    decode.chunks.push_back(
        {2, {}, static_cast<int32_t>(c.size()) + i, table_c, true, LogitsMode::kLast});
    ITE_RETURN_IF_ERROR(run(decode));
  }
  return t;
}

std::vector<StatusOr<Trace>> RunRanks(
    int size, const std::function<StatusOr<std::unique_ptr<Backend>>(int rank)>& make,
    const std::function<void()>& abort) {
  std::vector<StatusOr<Trace>> traces(size, Internal("not run"));
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      auto b = make(r);
      traces[r] = b.ok() ? RunWorkload(b->get()) : StatusOr<Trace>(b.status());
      if (!traces[r].ok()) abort();
    });
  }
  for (std::thread& t : threads) t.join();
  return traces;
}

}  // namespace ite::testing

// What `ite-client bench` sends its load through: the gRPC Generation service, or an OpenAI-
// compatible HTTP server (streamed /v1/completions), so the same load measures either front end.
// A target makes one streamed generation per Run call, from many threads at once.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ite::client {

// What the load needs to know of the model.
struct BenchModel {
  int32_t vocab_size = 0;      // random prompt ids are drawn below it
  int64_t kv_pool_tokens = 0;  // tokens all KV pools hold together; 0: the target cannot say
};

struct BenchCall {
  std::string request_id;
  const std::vector<int32_t>* prompt_ids = nullptr;  // one of the two is set
  const std::string* prompt_text = nullptr;
  int32_t max_tokens = 0;
  bool ignore_eos = true;
  float temperature = 0.0f;
  uint64_t seed = 0;
};

struct BenchCallResult {
  grpc::Status status;  // HTTP failures are mapped to the nearest gRPC code
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
};

// Lets Ctrl-C cancel a call from another thread: the target installs how (Set) before it
// blocks, and a no-op before what that refers to goes away; Cancel runs it at once, or as soon
// as it is set. The function must not call back into the canceller.
class CallCanceller {
 public:
  void Set(std::function<void()> cancel);
  void Cancel();

 private:
  std::mutex mu_;
  std::function<void()> cancel_;
  bool cancelled_ = false;
};

class BenchTarget {
 public:
  virtual ~BenchTarget() = default;
  // Connects and fills `model`; a failure ends the benchmark before it starts.
  virtual grpc::Status Prepare(BenchModel* model) = 0;
  // One streamed generation. `on_tokens(n)` runs when n new tokens arrive.
  virtual BenchCallResult Run(const BenchCall& call, const std::function<void(int)>& on_tokens,
                              CallCanceller* canceller) = 0;
  // For messages ("127.0.0.1:50051", "http://127.0.0.1:8000").
  virtual const std::string& address() const = 0;
};

std::unique_ptr<BenchTarget> MakeGrpcBenchTarget(const std::string& addr, int32_t timeout_ms);
// `url`: http://HOST:PORT (a path prefix such as /v1 is allowed and dropped).
std::unique_ptr<BenchTarget> MakeOpenAiBenchTarget(const std::string& url, int32_t timeout_ms);

}  // namespace ite::client

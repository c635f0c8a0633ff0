// `ite-client bench`: a serving benchmark over the public Generation service (gRPC) or, with
// --api openai, the same load through an OpenAI-compatible HTTP server (bench_target.h).
#pragma once

#include <cstdint>
#include <string>

namespace ite::client {

struct BenchOptions {
  std::string api = "grpc";  // or "openai"
  std::string addr;          // gRPC
  std::string url;           // openai: http://HOST:PORT
  int32_t requests = 500;
  int32_t concurrency = 0;   // > 0: closed loop with this many requests in flight
  double rate = 0;           // > 0: open loop, Poisson arrivals at this many requests per second
  int32_t input_len = 512;   // prompt tokens (random ids), unless prompts_file is given
  int32_t output_len = 256;  // new tokens per request (EOS ignored, so every request makes them)
  std::string prompts_file;  // one prompt per line, sent as text, cycled
  std::string json_path;     // also write the results as JSON here
  uint64_t seed = 1;
  float temperature = 0.0f;
  bool ignore_eos = true;
  int32_t connect_timeout_ms = 5000;
};

// Runs the benchmark, prints a table on stdout and returns an ExitCode.
int RunBench(const BenchOptions& options);

}  // namespace ite::client

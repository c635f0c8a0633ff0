// sse_chunk_bench: what the HTTP gateway spends turning one generated token into an SSE event
// (the stream chunk's JSON built and serialized, the `data: ...` framing), for completions and
// chat, as nanoseconds per chunk. The rest of a streamed token's gateway cost is one send()
// and a wake-up of the request's thread, which the HTTP-vs-gRPC run (bench/http_vs_grpc.py)
// measures as a whole.
//   sse_chunk_bench [iterations]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "scheduler/http/openai_response.h"

namespace {

double NanosPerChunk(ite::OpenAiEndpoint endpoint, int iterations) {
  ite::OpenAiResponseHeader header;
  header.endpoint = endpoint;
  header.id = "cmpl-0123456789abcdef";
  header.created = 1796129576;
  header.model = "SmolLM2-135M-Instruct.Q4_1";
  ite::GenerationChunk chunk;
  chunk.text = " Paris";
  chunk.token_ids = {7042};
  size_t bytes = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) {
    const std::string event =
        "data: " + ite::OpenAiDump(ite::OpenAiStreamChunk(header, 0, chunk, i == 0, 0)) + "\n\n";
    bytes += event.size();
  }
  const double ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  if (bytes == 0) std::abort();  // keeps the loop from being optimized away
  return ns / iterations;
}

}  // namespace

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 200000;
  if (iterations <= 0) {
    std::fprintf(stderr, "usage: sse_chunk_bench [iterations > 0]\n");
    return 2;
  }
  std::printf("completions chunk: %.0f ns\n",
              NanosPerChunk(ite::OpenAiEndpoint::kCompletions, iterations));
  std::printf("chat chunk:        %.0f ns\n",
              NanosPerChunk(ite::OpenAiEndpoint::kChat, iterations));
  return 0;
}

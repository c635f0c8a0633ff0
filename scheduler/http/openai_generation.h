// POST /v1/completions and /v1/chat/completions: parse (openai_request.h), submit every prompt's
// n continuations through RequestIntake, and answer whole or as an SSE stream.
//
// Streams: one `data: {chunk}` per session chunk (usually one token), an SSE comment every
// 100 ms while nothing is generated (so a client that went away is noticed by the failed write),
// the usage chunk with stream_options.include_usage, then `data: [DONE]`. A failed write cancels
// every session of the request at once. A generation that fails mid-stream sends an error
// object as its last data event (the HTTP status is already 200 then).
//
// Threads: Handle runs on a server thread per request; the handler itself is stateless apart
// from an atomic id counter.
#pragma once

#include <httplib.h>

#include <atomic>
#include <string>

#include "scheduler/http/openai_request.h"
#include "scheduler/request_intake.h"

namespace ite {

class OpenAiGeneration {
 public:
  explicit OpenAiGeneration(RequestIntake* intake);

  void Handle(OpenAiEndpoint endpoint, const httplib::Request& req, httplib::Response& res);

 private:
  RequestIntake* intake_;
  std::string id_prefix_;  // random per process, so ids differ across restarts
  std::atomic<uint64_t> next_id_{0};
};

// Writes an OpenAI error body (Content-Type application/json) with its status.
void SetOpenAiError(httplib::Response& res, const Status& status);

}  // namespace ite

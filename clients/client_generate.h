// `ite-client generate` and `ite-client chat`: the request flags they share (every sampling
// parameter of ite.v1.SamplingParams, each checked with a message naming the flag), building the
// request, and streaming the answer to stdout.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "proto/ite/v1/generation.grpc.pb.h"

namespace ite::client {

struct GenerateOptions {
  std::string addr = "127.0.0.1:50051";
  std::string model;        // empty: whatever the server serves
  std::string prompt;       // "-": read stdin
  std::string prompt_file;  // "-": read stdin
  std::string system;
  int32_t max_tokens = 256;
  // Optional sampling parameters: the server's defaults apply to flags not given.
  std::optional<float> temperature, top_p, min_p, repetition_penalty, presence_penalty,
      frequency_penalty;
  int32_t top_k = 0;
  std::optional<uint64_t> seed;
  bool chat = false;
  bool ignore_eos = false;
  bool usage = false;
  bool logprobs = false;
  int32_t top_logprobs = 0;
  std::vector<std::string> stop;
  std::vector<std::string> images;  // files, sent as they are (the server decodes them)
  int32_t connect_timeout_ms = 5000;
};

inline constexpr double kInf = std::numeric_limits<double>::infinity();

// A numeric flag's allowed range [lo, hi] (or (lo, hi]), checked on the text CLI11 parses; CLI11
// puts the flag's name in front of the message. NaN fails every comparison and so is rejected.
CLI::Validator Within(double lo, double hi, bool lo_open = false);

// --addr, --connect-timeout-ms: every subcommand that talks to the server has them.
void AddConnectionFlags(CLI::App* cmd, std::string* addr, int32_t* connect_timeout_ms);

// The request flags of generate and chat (sampling, stops, logprobs, --system, --usage).
void AddRequestFlags(CLI::App* cmd, GenerateOptions* o);

// Copies max_tokens, sampling, stops, logprobs and the model name into `req`.
void FillRequest(const GenerateOptions& o, ite::v1::GenerateRequest* req);

// The prompt from --prompt TEXT, --prompt - or --prompt-file FILE|- (stdin); a final newline
// of a file or stdin is dropped. False, with a message naming the flag in *error, when the file
// cannot be read.
bool ReadPrompt(const GenerateOptions& o, std::string* prompt, std::string* error);

// The file's bytes as an ite.v1.Image; false (with a message on stderr) when it cannot be read.
bool ReadImage(const std::string& path, ite::v1::Image* image);

// Streams one request's text to stdout; with --usage / --logprobs, also prints the finish
// reason, token counts and per-token logprobs on stderr. `text` gets the full answer.
grpc::Status StreamToStdout(ite::v1::Generation::Stub& stub, const ite::v1::GenerateRequest& req,
                            const GenerateOptions& o, grpc::ClientContext* ctx, std::string* text);

int RunGenerate(const GenerateOptions& o);
int RunChat(const GenerateOptions& o);

}  // namespace ite::client

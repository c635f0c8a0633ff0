// The small ite-client subcommands that ask the server about itself (there is no grpcurl on
// Debian): `info` (ModelInfo), `stats` (Stats), `tokenize` (Tokenize), `health` (the standard
// grpc.health.v1 service, as Kubernetes probes it).
#pragma once

#include <string>

#include "clients/client_generate.h"

namespace ite::client {

struct AdminOptions {
  std::string addr = "127.0.0.1:50051";
  int32_t connect_timeout_ms = 5000;
  bool json = false;  // print the response message as JSON instead of text
};

struct TokenizeOptions {
  GenerateOptions input;  // addr, prompt / prompt_file, chat, system
  bool tokens = false;    // also print each token's vocabulary string
  bool no_special_tokens = false;
  bool json = false;
};

struct HealthOptions {
  AdminOptions admin;
  std::string service;  // "": the server as a whole
};

int RunInfo(const AdminOptions& o);
int RunStats(const AdminOptions& o);
int RunTokenize(const TokenizeOptions& o);
// Exit 0 when SERVING, 3 otherwise (so it works as a readiness probe).
int RunHealth(const HealthOptions& o);

}  // namespace ite::client

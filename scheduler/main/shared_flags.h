// The flags ite-scheduler and ite-serve both take, declared once: ite-serve passes the
// scheduling ones on to its ite-scheduler child unchanged, so the two must spell, default and
// check them alike.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/logging.h"

namespace ite {

struct SchedulingFlags {
  int32_t max_batch_tokens = 2048;
  int32_t max_waiting = 1024;
  int32_t step_timeout_ms = 120000;
  int32_t route_load_slack = 4;
  int32_t worker_down_after_ms = 5000;
  bool no_prefix_cache = false;
};

inline void AddSchedulingFlags(CLI::App& app, SchedulingFlags* f) {
  app.add_option("--max-batch-tokens", f->max_batch_tokens, "tokens per step")
      ->capture_default_str();
  app.add_option("--max-waiting", f->max_waiting,
                 "queued requests per worker beyond the running ones; more get "
                 "RESOURCE_EXHAUSTED (0: no bound)")
      ->capture_default_str();
  app.add_option("--step-timeout-ms", f->step_timeout_ms,
                 "a worker step slower than this fails its requests and marks the worker down")
      ->capture_default_str();
  app.add_option("--route-load-slack", f->route_load_slack,
                 "a worker holding a request's prefix gets it unless its running + waiting "
                 "requests exceed the least loaded worker's by more than this")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--worker-down-after-ms", f->worker_down_after_ms,
                 "a worker that answers neither a health probe nor a step for this long (a "
                 "stopped or hung process) is marked down (its requests fail or move) until it "
                 "answers again (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600000));
  app.add_flag("--no-prefix-cache", f->no_prefix_cache, "disable the radix prefix cache");
}

// The same flags as arguments for an ite-scheduler child.
inline std::vector<std::string> SchedulingArgs(const SchedulingFlags& f) {
  std::vector<std::string> args = {
      "--max-batch-tokens",     std::to_string(f.max_batch_tokens),
      "--max-waiting",          std::to_string(f.max_waiting),
      "--step-timeout-ms",      std::to_string(f.step_timeout_ms),
      "--route-load-slack",     std::to_string(f.route_load_slack),
      "--worker-down-after-ms", std::to_string(f.worker_down_after_ms)};
  if (f.no_prefix_cache) args.push_back("--no-prefix-cache");
  return args;
}

struct LogFlags {
  bool verbose = false;
  std::string level = "info";   // -v: debug
  std::string format = "text";  // or json
};

inline void AddLogFlags(CLI::App& app, LogFlags* f) {
  app.add_flag("-v,--verbose", f->verbose, "debug logging (--log-level debug)");
  app.add_option("--log-level", f->level, "trace, debug, info, warn or error")
      ->capture_default_str();
  app.add_option("--log-format", f->format, "text or json (one JSON object per line)")
      ->capture_default_str();
}

inline std::vector<std::string> LogArgs(const LogFlags& f) {
  std::vector<std::string> args = {"--log-level", f.level, "--log-format", f.format};
  if (f.verbose) args.push_back("--verbose");
  return args;
}

inline std::optional<int> InitLoggingOrExit(const char* program, const LogFlags& f) {
  return InitLoggingOrExit(program, f.verbose, f.level, f.format);
}

}  // namespace ite

// A child process for ite-serve: fork + exec with the parent's blocked signals restored to
// default and PR_SET_PDEATHSIG, so a child never outlives an ite-serve killed with SIGKILL.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace ite {

class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess();  // kills (SIGKILL) and reaps a child still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Starts `argv[0]` (a path) with `argv`. `name` is for logs.
  Status Start(std::string name, std::vector<std::string> argv);

  // Non-blocking: true once the child has exited (then `exit_description` says how).
  bool Exited();
  // Sends `sig`; no-op if not running.
  void Signal(int sig);
  // SIGTERM, wait up to `grace`, then SIGKILL; always reaps.
  void Stop(std::chrono::milliseconds grace);

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  const std::string& exit_description() const { return exit_description_; }
  const std::vector<std::string>& argv() const { return argv_; }

 private:
  std::string name_;
  std::vector<std::string> argv_;
  pid_t pid_ = -1;
  std::string exit_description_;
};

}  // namespace ite

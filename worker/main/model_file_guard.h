// Keeps a worker from serving weights that changed under it. The weights are read through a
// memory map of the model files, so a file modified in place changes them page by page, with no
// error (and a truncated one raises SIGBUS on the next touch of a page past the new end). The
// guard records the files' identities before loading, checks them every interval on a thread of
// its own, and on a change in place calls `on_modified` (ite-worker exits, and its supervisor
// starts a worker that loads the new file, saying so in its log). A file replaced (renamed over)
// or removed leaves the mapping intact: the worker goes on serving what it loaded, with a
// warning that a restart loads another file or none.
//
// Threads: construct and destroy on one thread; `on_modified` runs on the guard's thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/file_identity.h"

namespace ite {

class ModelFileGuard {
 public:
  ModelFileGuard(const std::string& model_path, std::chrono::milliseconds interval,
                 std::function<void(const std::string& why)> on_modified);
  ~ModelFileGuard();
  ModelFileGuard(const ModelFileGuard&) = delete;
  ModelFileGuard& operator=(const ModelFileGuard&) = delete;

  // Starts checking (after the weights are loaded and mapped).
  void Start();

 private:
  void Loop();

  std::vector<FileIdentity> files_;
  std::vector<FileChange> reported_;  // the last change logged, per file
  std::chrono::milliseconds interval_;
  std::function<void(const std::string&)> on_modified_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// Turns a SIGBUS (a mapped model file truncated under the process) into a clear message on
// stderr and exit code `exit_code`, instead of a bare crash.
void ExitClearlyOnSigbus(int exit_code);

}  // namespace ite

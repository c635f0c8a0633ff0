#include "worker/main/model_file_guard.h"

#include <signal.h>
#include <unistd.h>

#include <cstring>

#include "common/logging.h"

namespace ite {

ModelFileGuard::ModelFileGuard(const std::string& model_path, std::chrono::milliseconds interval,
                               std::function<void(const std::string& why)> on_modified)
    : interval_(interval), on_modified_(std::move(on_modified)) {
  for (const std::string& path : ModelFiles(model_path)) {
    // A file that cannot be read is the loader's to report.
    if (StatusOr<FileIdentity> id = FileIdentityOf(path); id.ok()) files_.push_back(*id);
  }
  reported_.assign(files_.size(), FileChange::kNone);
}

ModelFileGuard::~ModelFileGuard() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ModelFileGuard::Start() {
  if (!files_.empty()) thread_ = std::thread([this] { Loop(); });
}

void ModelFileGuard::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, interval_, [this] { return stop_; })) {
    for (size_t i = 0; i < files_.size(); ++i) {
      const FileChange change = FileChangeSince(files_[i]);
      if (change == FileChange::kModifiedInPlace) {
        on_modified_(fmt::format(
            "model file {} was modified in place while this worker serves it from a memory map",
            files_[i].path));
        return;
      }
      if (change != reported_[i]) {  // once per change: replaced, then maybe removed
        reported_[i] = change;
        ITE_LOG_WARN(
            "model file {} was {} on disk; this worker keeps serving the weights it loaded, and "
            "a restart will load {}",
            files_[i].path, FileChangeName(change),
            change == FileChange::kRemoved ? "nothing (the file is gone)" : "the new file");
      }
    }
  }
}

namespace {

volatile sig_atomic_t sigbus_exit_code = 1;

void OnSigbus(int) {
  static constexpr char kMessage[] =
      "ite-worker: SIGBUS reading mapped memory: a model file was probably truncated while "
      "this worker serves it; exiting\n";
  ssize_t ignored = ::write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
  (void)ignored;
  ::_exit(sigbus_exit_code);
}

}  // namespace

void ExitClearlyOnSigbus(int exit_code) {
  sigbus_exit_code = exit_code;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnSigbus;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGBUS, &sa, nullptr);
}

}  // namespace ite

// A model file that changes or disappears under a running ite-serve (REAL processes, a copy of
// SmolLM2 in a scratch folder): never read again silently. Modified in place (the worker's
// weights are a memory map of it), the worker exits and a fresh one loads the file as it is,
// saying so; replaced by a new file or removed, the worker keeps serving what it loaded, with the
// same output, and says a restart would load another file or none.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/e2e/service_harness.h"

namespace ite::e2e {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

int WorkerPid(const ServeProcess& serve) {
  for (int pid : serve.ChildPids()) {
    if (ProcessName(pid) == "ite-worker") return pid;
  }
  return 0;
}

TEST(ModelFileE2E, ChangedInPlaceRestartsTheWorkerReplacedOrRemovedKeepsServing) {
  Env env = ReadEnv();
  if (!env.missing.empty()) GTEST_SKIP() << env.missing;
  TempDir dir;
  const std::string model = dir.path() + "/model.gguf";
  fs::copy_file(env.model, model);
  Env copy = env;
  copy.model = model;
  ServeProcess serve;
  ASSERT_TRUE(serve.Start(copy, 1));
  const ite::v1::GenerateRequest req = Greedy("The capital of France is", 6);
  GenerateResult reference = Generate(*serve.Stub(), req);
  ASSERT_TRUE(reference.status.ok()) << reference.status.error_message();
  const int first = WorkerPid(serve);
  ASSERT_GT(first, 0);

  // In place: the same inode gets a write (the byte it held, so the weights stay as they were
  // and the output can be compared). The worker must not go on as if nothing happened.
  {
    std::fstream f(model, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-1, std::ios::end);
    char last = 0;
    f.get(last);
    f.seekp(-1, std::ios::end);
    f.put(last);
  }
  int second = 0;
  ASSERT_TRUE(WaitUntil(
      [&] {
        second = WorkerPid(serve);
        return second > 0 && second != first;
      },
      seconds(60)))
      << "the worker kept serving a model file modified in place";
  GenerateResult after_restart;
  ASSERT_TRUE(WaitUntil(
      [&] {
        after_restart = Generate(*serve.Stub(), req, seconds(60));
        return after_restart.status.ok();
      },
      seconds(60)))
      << after_restart.status.error_message();
  EXPECT_EQ(after_restart.tokens, reference.tokens);

  // Replaced (a new file renamed over it), then removed: the mapping still holds the file that
  // was loaded; the same worker serves the same output.
  const std::string fresh = dir.path() + "/fresh.gguf";
  fs::copy_file(env.model, fresh);
  fs::rename(fresh, model);
  std::this_thread::sleep_for(seconds(2));  // the guard checks every second
  GenerateResult replaced = Generate(*serve.Stub(), req);
  ASSERT_TRUE(replaced.status.ok()) << replaced.status.error_message();
  EXPECT_EQ(replaced.tokens, reference.tokens);
  EXPECT_EQ(WorkerPid(serve), second);

  fs::remove(model);
  std::this_thread::sleep_for(seconds(2));
  GenerateResult removed = Generate(*serve.Stub(), req);
  ASSERT_TRUE(removed.status.ok()) << removed.status.error_message();
  EXPECT_EQ(removed.tokens, reference.tokens);
  EXPECT_EQ(WorkerPid(serve), second);
}

}  // namespace
}  // namespace ite::e2e

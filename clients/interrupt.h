// Ctrl-C as an event instead of death: for `chat` (stop only the current reply) and `bench`
// (stop and still report what finished). After InstallInterruptHandler(), SIGINT no longer ends
// the process; it makes InterruptFd() readable until DrainInterrupts() is called.
#pragma once

#include <functional>
#include <thread>

namespace ite::client {

// Idempotent. Call from the main thread before starting other threads.
void InstallInterruptHandler();

// A descriptor that is readable while an interrupt is pending (for poll()).
int InterruptFd();

// Consumes pending interrupts; true if there was at least one.
bool DrainInterrupts();

// While alive, runs `on_interrupt` on a helper thread each time Ctrl-C is pressed. The callback
// must be safe to call from another thread (grpc::ClientContext::TryCancel is).
class OnInterrupt {
 public:
  explicit OnInterrupt(std::function<void()> on_interrupt);
  ~OnInterrupt();
  OnInterrupt(const OnInterrupt&) = delete;
  OnInterrupt& operator=(const OnInterrupt&) = delete;

 private:
  std::function<void()> on_interrupt_;
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace ite::client

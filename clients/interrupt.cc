#include "clients/interrupt.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <stdexcept>

namespace ite::client {
namespace {

int g_pipe[2] = {-1, -1};

// Async-signal-safe: one byte into a non-blocking pipe (a full pipe already means "pending").
void OnSigint(int) {
  const int saved = errno;
  const char b = 1;
  [[maybe_unused]] ssize_t n = write(g_pipe[1], &b, 1);
  errno = saved;
}

void MakePipe(int fds[2]) {
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw std::runtime_error("pipe2 failed");
}

}  // namespace

void InstallInterruptHandler() {
  if (g_pipe[0] >= 0) return;
  MakePipe(g_pipe);
  struct sigaction sa = {};
  sa.sa_handler = OnSigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
}

int InterruptFd() { return g_pipe[0]; }

bool DrainInterrupts() {
  bool any = false;
  char buf[64];
  while (read(g_pipe[0], buf, sizeof buf) > 0) any = true;
  return any;
}

OnInterrupt::OnInterrupt(std::function<void()> on_interrupt)
    : on_interrupt_(std::move(on_interrupt)) {
  MakePipe(stop_pipe_);
  thread_ = std::thread([this] {
    while (true) {
      pollfd fds[2] = {{InterruptFd(), POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents != 0) return;
      if (DrainInterrupts()) on_interrupt_();
    }
  });
}

OnInterrupt::~OnInterrupt() {
  const char b = 1;
  [[maybe_unused]] ssize_t n = write(stop_pipe_[1], &b, 1);
  thread_.join();
  close(stop_pipe_[0]);
  close(stop_pipe_[1]);
}

}  // namespace ite::client

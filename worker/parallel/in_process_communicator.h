// A Communicator for N ranks that are N threads of one process (tests): the ranks share memory,
// so each collective hands every rank's buffer pointer to the others and sums in rank order
// (rank 0 + rank 1 + ...), deterministically and identically on every rank.
//
// Buffers in device memory go through a HostStaging (copies to and from the host on the rank's
// stream, waited for); the sum itself runs on the host, in fp32. That cannot be captured in a
// CUDA graph, so backends that use it must run without graphs.
//
// No hang: a rank that waits longer than `timeout_ms` for the others, or whose group was
// aborted (Abort(), e.g. when another rank's thread failed), gets an Unavailable status, and so
// does every later call.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "worker/parallel/communicator.h"

namespace ite {

// Moves a rank's buffer to host memory and back (device memory); nullptr means host memory.
class HostStaging {
 public:
  virtual ~HostStaging() = default;
  virtual Status ToHost(const void* src, void* host, size_t bytes, void* stream) const = 0;
  virtual Status FromHost(const void* host, void* dst, size_t bytes, void* stream) const = 0;
};

struct InProcessGroupOptions {
  int size = 1;
  const HostStaging* staging = nullptr;  // must outlive the group; nullptr: host buffers
  int64_t timeout_ms = 60000;
};

class InProcessGroup {
 public:
  explicit InProcessGroup(const InProcessGroupOptions& options);
  ~InProcessGroup();
  InProcessGroup(const InProcessGroup&) = delete;
  InProcessGroup& operator=(const InProcessGroup&) = delete;

  // Rank r's communicator, owned by the group (r in [0, size)).
  Communicator* rank(int r);
  // Every waiting and later collective fails with Unavailable.
  void Abort();

  struct State;

 private:
  std::unique_ptr<State> state_;
  std::vector<std::unique_ptr<Communicator>> ranks_;
};

}  // namespace ite

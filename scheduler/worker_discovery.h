// WorkerDiscovery: the scheduler's worker slots from a --workers target.
//
//   host:port[,host:port...]   a static list, one slot each (names are resolved by gRPC).
//   dns:///NAME:PORT           a name re-resolved every resolve_interval_ms; each address it
//                              gives (one per pod of a headless Service) gets a slot, up to
//                              max_workers. An address that appears is put in a free slot (the
//                              scheduler clears that worker and takes it in); one that is gone
//                              empties its slot (its running requests fail UNAVAILABLE, its
//                              cache state is dropped). A failed lookup changes nothing; an
//                              answer with no address empties every slot.
// A tensor-parallel group is one address (its rank 0), so it is one worker.
//
// Threads: the resolver runs on a thread of the discovery's own; Stop() or the destructor ends
// it. The clients must outlive the discovery: stop it before the scheduler that owns them goes.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "scheduler/switchable_worker_client.h"

namespace ite {

struct WorkerTarget {
  std::vector<std::string> addresses;  // static list
  std::string dns_host;                // dns:///HOST:PORT; empty for a static list
  int dns_port = 0;
};
// INVALID_ARGUMENT naming what is wrong with `spec`.
StatusOr<WorkerTarget> ParseWorkerTarget(const std::string& spec);

// Addresses of `host` ("10.0.0.7", "[fd00::7]"); NOT_FOUND when the name has no address,
// UNAVAILABLE when the lookup itself failed (a DNS server that did not answer).
using HostResolver = std::function<StatusOr<std::vector<std::string>>(const std::string& host)>;
HostResolver SystemHostResolver();  // getaddrinfo: /etc/hosts, then DNS

struct WorkerDiscoveryOptions {
  WorkerTarget target;
  int32_t max_workers = 16;  // slots for a dns:/// target
  int32_t resolve_interval_ms = 5000;
  HostResolver resolver;                    // default: SystemHostResolver()
  SwitchableWorkerClient::Factory factory;  // a client for an address
};

class WorkerDiscovery {
 public:
  explicit WorkerDiscovery(WorkerDiscoveryOptions options);
  ~WorkerDiscovery();

  WorkerDiscovery(const WorkerDiscovery&) = delete;
  WorkerDiscovery& operator=(const WorkerDiscovery&) = delete;

  // Creates the slots (resolving a dns:/// target once, now) and starts re-resolving. The
  // clients go to the scheduler; the discovery keeps pointers to them.
  std::vector<std::unique_ptr<WorkerClient>> Start();
  // A name per slot for logs and Stats ("10.0.0.7:50052 (dns:///ite-worker:50052 #0)").
  std::vector<std::string> SlotNames() const;
  // Resolves now (tests; the thread does this every interval).
  void ResolveNow();
  void Stop();

 private:
  void Loop();

  const WorkerDiscoveryOptions options_;
  std::vector<SwitchableWorkerClient*> slots_;
  std::mutex resolve_mu_;   // one resolution at a time (the thread's and ResolveNow's)
  bool was_empty_ = false;  // guarded by resolve_mu_: the last answer had no address
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace ite

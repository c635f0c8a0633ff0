#include "scheduler/worker_discovery.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <sstream>

#include "common/logging.h"

namespace ite {

namespace {

constexpr char kDnsScheme[] = "dns:///";

std::string WithPort(const std::string& host, int port) {
  return host + ":" + std::to_string(port);
}

}  // namespace

StatusOr<WorkerTarget> ParseWorkerTarget(const std::string& spec) {
  WorkerTarget target;
  if (spec.rfind(kDnsScheme, 0) == 0) {
    const std::string rest = spec.substr(sizeof(kDnsScheme) - 1);
    const size_t colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0 || rest.find(',') != std::string::npos) {
      return InvalidArgument("--workers {}: dns:/// takes one NAME:PORT", spec);
    }
    const std::string port = rest.substr(colon + 1);
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoi(port) < 1 || std::stoi(port) > 65535) {
      return InvalidArgument("--workers {}: the port must be in [1, 65535]", spec);
    }
    target.dns_host = rest.substr(0, colon);
    target.dns_port = std::stoi(port);
    return target;
  }
  std::stringstream in(spec);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) target.addresses.push_back(item);
  }
  if (target.addresses.empty()) {
    return InvalidArgument("--workers: give host:port[,host:port...] or dns:///NAME:PORT");
  }
  return target;
}

HostResolver SystemHostResolver() {
  return [](const std::string& host) -> StatusOr<std::vector<std::string>> {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc == EAI_NONAME || rc == EAI_NODATA) return NotFound("{} has no address", host);
    if (rc != 0) return Unavailable("resolving {}: {}", host, ::gai_strerror(rc));
    std::set<std::string> out;
    for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
      char buf[INET6_ADDRSTRLEN] = {};
      if (a->ai_family == AF_INET) {
        ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, buf,
                    sizeof(buf));
        out.insert(buf);
      } else if (a->ai_family == AF_INET6) {
        ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, buf,
                    sizeof(buf));
        out.insert(std::string("[") + buf + "]");
      }
    }
    ::freeaddrinfo(res);
    return std::vector<std::string>(out.begin(), out.end());
  };
}

WorkerDiscovery::WorkerDiscovery(WorkerDiscoveryOptions options) : options_(std::move(options)) {}

WorkerDiscovery::~WorkerDiscovery() { Stop(); }

std::vector<std::unique_ptr<WorkerClient>> WorkerDiscovery::Start() {
  std::vector<std::unique_ptr<WorkerClient>> clients;
  const bool dns = !options_.target.dns_host.empty();
  const size_t n = dns ? static_cast<size_t>(std::max(1, options_.max_workers))
                       : options_.target.addresses.size();
  for (size_t i = 0; i < n; ++i) {
    auto c = std::make_unique<SwitchableWorkerClient>(options_.factory);
    if (!dns) c->SetAddress(options_.target.addresses[i]);
    slots_.push_back(c.get());
    clients.push_back(std::move(c));
  }
  if (dns) {
    ResolveNow();
    thread_ = std::thread([this] { Loop(); });
  }
  return clients;
}

std::vector<std::string> WorkerDiscovery::SlotNames() const {
  std::vector<std::string> names;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (options_.target.dns_host.empty()) {
      names.push_back(options_.target.addresses[i]);
    } else {
      names.push_back(fmt::format("{}{} #{}", kDnsScheme,
                                  WithPort(options_.target.dns_host, options_.target.dns_port), i));
    }
  }
  return names;
}

void WorkerDiscovery::ResolveNow() {
  std::lock_guard<std::mutex> resolving(resolve_mu_);
  const WorkerTarget& t = options_.target;
  HostResolver resolve = options_.resolver ? options_.resolver : SystemHostResolver();
  StatusOr<std::vector<std::string>> hosts = resolve(t.dns_host);
  std::set<std::string> want;
  if (hosts.ok()) {
    for (const std::string& h : *hosts) want.insert(WithPort(h, t.dns_port));
  } else if (hosts.status().code() != StatusCode::kNotFound) {
    ITE_LOG_WARN("workers: {}; keeping the workers as they are", hosts.status().message());
    return;
  }
  // Said once per spell without addresses, so a name that never resolves is visible in the log.
  if (want.empty() && !was_empty_) {
    ITE_LOG_WARN("workers: {} has no address (yet); resolving again every {} ms", t.dns_host,
                 options_.resolve_interval_ms);
  }
  was_empty_ = want.empty();
  // Slots whose address is gone are emptied first, so their slots can take newcomers.
  std::vector<SwitchableWorkerClient*> free;
  std::set<std::string> have;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const std::string a = slots_[i]->address();
    if (!a.empty() && want.count(a) == 0) {
      ITE_LOG_INFO("workers: {} left {}{}; slot {} emptied", a, kDnsScheme, t.dns_host, i);
      slots_[i]->SetAddress("");
    }
    if (slots_[i]->address().empty()) {
      free.push_back(slots_[i]);
    } else {
      have.insert(a);
    }
  }
  size_t next = 0;
  for (const std::string& a : want) {
    if (have.count(a)) continue;
    if (next == free.size()) {
      ITE_LOG_WARN("workers: {} has more than {} addresses; {} is left out", t.dns_host,
                   slots_.size(), a);
      continue;
    }
    ITE_LOG_INFO("workers: {} joined {}{}", a, kDnsScheme, t.dns_host);
    free[next++]->SetAddress(a);
  }
}

void WorkerDiscovery::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::milliseconds(std::max(10, options_.resolve_interval_ms)),
                 [this] { return stopping_; });
    if (stopping_) return;
    lock.unlock();
    ResolveNow();
    lock.lock();
  }
}

void WorkerDiscovery::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace ite

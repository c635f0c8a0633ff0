#include "scheduler/http/client_connection.h"

#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdlib>

namespace ite {
namespace {

// A socket address as httplib writes it (numeric host, port).
bool Describe(const sockaddr_storage& addr, socklen_t len, std::string* host, int* port) {
  char h[NI_MAXHOST], p[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, h, sizeof(h), p, sizeof(p),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return false;
  }
  *host = h;
  *port = std::atoi(p);
  return true;
}

bool Matches(int fd, const std::string& local_addr, int local_port, const std::string& remote_addr,
             int remote_port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  std::string host;
  int port = -1;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      !Describe(addr, len, &host, &port) || port != remote_port || host != remote_addr) {
    return false;
  }
  len = sizeof(addr);
  return ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
         Describe(addr, len, &host, &port) && port == local_port && host == local_addr;
}

}  // namespace

ClientConnection::ClientConnection(const httplib::Request& req)
    : local_addr_(req.local_addr),
      remote_addr_(req.remote_addr),
      local_port_(req.local_port),
      remote_port_(req.remote_port) {}

bool ClientConnection::Closed() {
  if (!looked_up_) {
    looked_up_ = true;
    // Open sockets are few (one per connection, the gRPC channels), so a scan is cheap next to a
    // generation; it runs once per request, and only for requests that take a while.
    if (DIR* dir = ::opendir("/proc/self/fd")) {
      while (dirent* e = ::readdir(dir)) {
        char* end = nullptr;
        const long fd = std::strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end != '\0' || fd == ::dirfd(dir)) continue;
        struct stat st {};
        if (::fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
        if (Matches(static_cast<int>(fd), local_addr_, local_port_, remote_addr_, remote_port_)) {
          fd_ = static_cast<int>(fd);
          break;
        }
      }
      ::closedir(dir);
    }
  }
  if (fd_ < 0) return false;
  // The handler's thread owns the socket until it returns, so fd_ stays this connection's.
  // POLLRDHUP: the client sent FIN; POLLHUP / POLLERR: reset. Readable bytes alone are a
  // pipelined next request, not a departure.
  pollfd p{fd_, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace ite

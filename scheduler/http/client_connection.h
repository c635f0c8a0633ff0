// Whether the client of a request that a handler is still working on has gone away.
//
// cpp-httplib 0.11 (Debian 12) hands a handler no way to its connection (later versions added
// Request::is_connection_closed), so the connection's socket is found by its two addresses,
// which httplib does give: the one socket of this process whose local and peer address are the
// request's. A streamed response notices a departed client at its next write; this serves a
// whole (non-streamed) response, which writes nothing until the generation is done.
//
// Threads: one ClientConnection per request, used by that request's handler thread.
#pragma once

#include <httplib.h>

#include <string>

namespace ite {

class ClientConnection {
 public:
  explicit ClientConnection(const httplib::Request& req);

  // True once the client has closed or reset its connection (or its half for sending). The
  // socket is looked up on the first call; a socket that cannot be found counts as open.
  bool Closed();

 private:
  std::string local_addr_, remote_addr_;
  int local_port_ = -1, remote_port_ = -1;
  int fd_ = -1;
  bool looked_up_ = false;
};

}  // namespace ite

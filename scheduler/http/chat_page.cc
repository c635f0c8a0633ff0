#include "scheduler/http/chat_page.h"

#include <string>

namespace ite {
namespace {

std::string ContentType(std::string_view path) {
  auto ends = [&](std::string_view ext) {
    return path.size() >= ext.size() && path.substr(path.size() - ext.size()) == ext;
  };
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  return "text/html; charset=utf-8";
}

}  // namespace

bool IsChatPagePath(std::string_view path) {
  for (const EmbeddedFile& f : EmbeddedChatPage()) {
    if (f.path == path) return true;
  }
  return false;
}

void AddChatPageRoutes(httplib::Server& server) {
  for (const EmbeddedFile& f : EmbeddedChatPage()) {
    const std::string type = ContentType(f.path);
    std::string pattern;  // a regex: the path with its dots escaped
    for (char c : f.path) {
      if (c == '.') pattern += '\\';
      pattern += c;
    }
    server.Get(pattern, [f, type](const httplib::Request&, httplib::Response& res) {
      res.set_header("Content-Security-Policy",
                     "default-src 'self'; style-src 'self'; script-src 'self'");
      res.set_header("X-Content-Type-Options", "nosniff");
      // A rebuilt server may serve a changed page: the browser asks again each time.
      res.set_header("Cache-Control", "no-cache");
      res.set_content(f.bytes.data(), f.bytes.size(), type.c_str());
    });
  }
}

}  // namespace ite

// The chat page served at `/` (chat_page/: plain HTML, JS and CSS, no build step, nothing
// fetched from elsewhere), compiled into the scheduler by embed_files.cmake.
#pragma once

#include <httplib.h>

#include <string_view>
#include <vector>

namespace ite {

struct EmbeddedFile {
  std::string_view path;  // the URL path it is served at ("/" for index.html)
  std::string_view bytes;
};

// Generated from chat_page/ at build time.
const std::vector<EmbeddedFile>& EmbeddedChatPage();

// Whether `path` is one of the page's files: public, even where the API needs a key (they hold
// nothing secret, and the page asks for the key itself).
bool IsChatPagePath(std::string_view path);

// GET routes for each of the page's files. The page may load only from this server (its
// Content-Security-Policy says so), so a stray CDN link would fail in the browser test.
void AddChatPageRoutes(httplib::Server& server);

}  // namespace ite

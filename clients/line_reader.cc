#include "clients/line_reader.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "clients/interrupt.h"

#if ITE_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

namespace ite::client {
namespace {

#if ITE_HAVE_LIBEDIT
// libedit's callback interface hands the finished line to a plain function.
struct PendingLine {
  bool done = false;
  bool eof = false;
  std::string text;
};
PendingLine* g_pending = nullptr;

void OnLine(char* line) {
  g_pending->done = true;
  if (line == nullptr) {
    g_pending->eof = true;
  } else {
    g_pending->text = line;
    std::free(line);
  }
}
#endif

}  // namespace

LineReader::LineReader(std::string prompt) : prompt_(std::move(prompt)) {
  interactive_ = isatty(STDIN_FILENO) && isatty(STDERR_FILENO);
#if ITE_HAVE_LIBEDIT
  if (interactive_) {
    // Signals stay ours: Ctrl-C reaches the interrupt pipe rather than libedit's handlers.
    rl_catch_signals = 0;
    rl_readline_name = "ite-client";
    rl_outstream = stderr;  // stdout carries only the model's answers
    rl_initialize();
  }
#endif
}

LineReader::~LineReader() = default;

void LineReader::Remember(const std::string& line) {
#if ITE_HAVE_LIBEDIT
  if (interactive_) add_history(line.c_str());
#endif
}

LineStatus LineReader::Read(std::string* line) {
#if ITE_HAVE_LIBEDIT
  if (interactive_) {
    PendingLine pending;
    g_pending = &pending;
    DrainInterrupts();  // a Ctrl-C from before the prompt was shown is not meant for it
    rl_callback_handler_install(prompt_.c_str(), OnLine);
    LineStatus result = LineStatus::kLine;
    while (!pending.done) {
      pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {InterruptFd(), POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        result = LineStatus::kEof;
        break;
      }
      if (fds[1].revents != 0 && DrainInterrupts()) {
        rl_replace_line("", 0);
        result = LineStatus::kInterrupted;
        break;
      }
      if (fds[0].revents != 0) rl_callback_read_char();
    }
    rl_callback_handler_remove();
    g_pending = nullptr;
    if (result == LineStatus::kInterrupted) {
      std::fputs("^C\n", stderr);
      return result;
    }
    if (pending.eof || result == LineStatus::kEof) {
      std::fputc('\n', stderr);  // leave the shell's prompt on a line of its own
      return LineStatus::kEof;
    }
    *line = std::move(pending.text);
    return LineStatus::kLine;
  }
#endif
  if (interactive_) std::fputs(prompt_.c_str(), stderr);
  if (!std::getline(std::cin, *line)) {
    if (interactive_) std::fputc('\n', stderr);
    return LineStatus::kEof;
  }
  return LineStatus::kLine;
}

}  // namespace ite::client

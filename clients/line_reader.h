// Input lines for `ite-client chat`. On a terminal (and with libedit built in): line editing
// (arrows, Home/End, Ctrl-A/E/K/W...), Up/Down through the session's history, and Ctrl-C that
// discards the line being typed instead of ending the program. Otherwise plain lines from stdin.
// Needs InstallInterruptHandler() to have run (Ctrl-C arrives through InterruptFd()).
#pragma once

#include <string>

namespace ite::client {

enum class LineStatus {
  kLine,         // *line holds one line, without its newline
  kInterrupted,  // Ctrl-C while typing: the line was discarded
  kEof,          // Ctrl-D on an empty line, or the end of piped input
};

class LineReader {
 public:
  // `prompt` is shown before each line on a terminal; piped input gets no prompt.
  explicit LineReader(std::string prompt);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  LineStatus Read(std::string* line);
  // Adds a line to the history that Up/Down walk through.
  void Remember(const std::string& line);

  bool interactive() const { return interactive_; }

 private:
  std::string prompt_;
  bool interactive_ = false;
};

}  // namespace ite::client

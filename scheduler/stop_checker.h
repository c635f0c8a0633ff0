// Turns a request's sampled tokens into final text and finds stop strings, which may span token
// boundaries ("\n\n" from "\n" + "\n", "</answer>" from "</" + "answer" + ">").
//
// Text that could still be the start of a stop string is held back until the next token decides;
// text after the first stop string is never emitted. Without a tokenizer there is no text (and
// no stop strings: the scheduler rejects them at Submit).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ite {

class Tokenizer;
class IncrementalDecoder;

class StopChecker {
 public:
  // `tokenizer` may be null; it must outlive the checker.
  StopChecker(const Tokenizer* tokenizer, std::vector<std::string> stop_strings);
  ~StopChecker();
  StopChecker(StopChecker&&) noexcept;
  StopChecker& operator=(StopChecker&&) noexcept;

  struct Result {
    std::string text;      // newly final text
    bool stopped = false;  // a stop string completed; `text` ends right before it
  };
  Result Push(int32_t token);
  // At the end of generation (not after a stop): everything held back plus the decoder's rest,
  // cut at a stop string if one completes in it.
  Result Flush();

 private:
  Result Consume(std::string fresh, bool final);

  std::unique_ptr<IncrementalDecoder> decoder_;
  std::vector<std::string> stops_;
  size_t max_stop_len_ = 0;
  std::string held_;  // decoded text not emitted yet (a possible stop-string prefix)
  bool stopped_ = false;
};

}  // namespace ite

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
  // `include_stop`: the matched stop string ends the text instead of being dropped.
  StopChecker(const Tokenizer* tokenizer, std::vector<std::string> stop_strings,
              bool include_stop = false);
  ~StopChecker();
  StopChecker(StopChecker&&) noexcept;
  StopChecker& operator=(StopChecker&&) noexcept;

  struct Result {
    std::string text;      // newly final text
    bool stopped = false;  // a stop string completed; `text` ends right before (or with) it
  };
  Result Push(int32_t token);
  // Like Push, but a stop string completing now does not stop (min_tokens not reached yet): its
  // text is emitted and matching goes on after it.
  Result PushNoStop(int32_t token);
  // At the end of generation (not after a stop): everything held back plus the decoder's rest,
  // cut at a stop string if one completes in it.
  Result Flush();

 private:
  Result Consume(std::string fresh, bool final, bool may_stop = true);

  std::unique_ptr<IncrementalDecoder> decoder_;
  std::vector<std::string> stops_;
  size_t max_stop_len_ = 0;
  bool include_stop_ = false;
  std::string held_;  // decoded text not emitted yet (a possible stop-string prefix)
  bool stopped_ = false;
};

}  // namespace ite

#include "scheduler/stop_checker.h"

#include <algorithm>

#include "scheduler/tokenizer/tokenizer.h"

namespace ite {

StopChecker::StopChecker(const Tokenizer* tokenizer, std::vector<std::string> stop_strings,
                         bool include_stop)
    : stops_(std::move(stop_strings)), include_stop_(include_stop) {
  if (tokenizer != nullptr) decoder_ = std::make_unique<IncrementalDecoder>(*tokenizer);
  for (const std::string& s : stops_) max_stop_len_ = std::max(max_stop_len_, s.size());
}

StopChecker::~StopChecker() = default;
StopChecker::StopChecker(StopChecker&&) noexcept = default;
StopChecker& StopChecker::operator=(StopChecker&&) noexcept = default;

StopChecker::Result StopChecker::Push(int32_t token) {
  if (decoder_ == nullptr || stopped_) return {};
  return Consume(decoder_->Push(token), /*final=*/false);
}

StopChecker::Result StopChecker::PushNoStop(int32_t token) {
  if (decoder_ == nullptr || stopped_) return {};
  return Consume(decoder_->Push(token), /*final=*/false, /*may_stop=*/false);
}

StopChecker::Result StopChecker::Flush() {
  if (decoder_ == nullptr || stopped_) return {};
  return Consume(decoder_->Flush(), /*final=*/true);
}

StopChecker::Result StopChecker::Consume(std::string fresh, bool final, bool may_stop) {
  Result result;
  size_t old_size = held_.size();
  held_ += fresh;
  if (stops_.empty()) {
    result.text.swap(held_);
    return result;
  }
  // A stop string that completes now ends inside `fresh`, so it starts at or after this. Before
  // min_tokens (!may_stop) a complete stop string is plain text: only the hold-back applies.
  const size_t from = old_size >= max_stop_len_ ? old_size - max_stop_len_ + 1 : 0;
  size_t first = std::string::npos;
  size_t first_len = 0;
  for (size_t i = 0; may_stop && i < stops_.size(); ++i) {
    size_t at = held_.find(stops_[i], from);
    if (at < first) {
      first = at;
      first_len = stops_[i].size();
    }
  }
  if (first != std::string::npos) {
    result.text = held_.substr(0, first + (include_stop_ ? first_len : 0));
    result.stopped = true;
    stopped_ = true;
    held_.clear();
    return result;
  }
  // Hold back the longest tail that is a proper prefix of some stop string. It starts where a
  // stop string's first byte matched, so the cut is on a UTF-8 character boundary.
  size_t keep = 0;
  if (!final) {
    for (const std::string& s : stops_) {
      for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n) {
        if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
          keep = n;
          break;
        }
      }
    }
  }
  result.text = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return result;
}

}  // namespace ite

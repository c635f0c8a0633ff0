#include "clients/bench_target.h"

namespace ite::client {

// Both run the cancel function under the lock, so that the call's Set of a no-op when it ends
// waits for a Cancel running at that moment: what the function refers to is still alive then.
void CallCanceller::Set(std::function<void()> cancel) {
  std::lock_guard<std::mutex> lock(mu_);
  cancel_ = std::move(cancel);
  if (cancelled_) cancel_();
}

void CallCanceller::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (cancel_) cancel_();
}

}  // namespace ite::client

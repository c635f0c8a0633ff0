#include "worker/parallel/in_process_communicator.h"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "common/check.h"
#include "worker/model/dequantize.h"

namespace ite {

// What the ranks share: a reusable barrier (generation counter) and each rank's posted buffer.
struct InProcessGroup::State {
  struct Slot {
    const void* data = nullptr;
    int64_t count = 0;
    DType dtype = DType::kF32;
    int root = 0;
  };

  explicit State(const InProcessGroupOptions& o)
      : size(o.size), staging(o.staging), timeout_ms(o.timeout_ms), slots(o.size) {}

  // Every rank's Wait returns once all `size` ranks called it, or Unavailable on abort or
  // timeout (after which the group stays aborted, so no rank waits for a dead one again).
  Status Wait() {
    std::unique_lock<std::mutex> lock(mu);
    if (aborted) return Unavailable("tensor-parallel group aborted");
    const uint64_t gen = generation;
    if (++arrived == size) {
      arrived = 0;
      ++generation;
      cv.notify_all();
      return Status::Ok();
    }
    const bool done = cv.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                                  [&] { return generation != gen || aborted; });
    if (generation != gen) return Status::Ok();
    aborted = true;
    cv.notify_all();
    return done ? Unavailable("tensor-parallel group aborted")
                : Unavailable("tensor-parallel group: ranks missing after {} ms", timeout_ms);
  }

  void Abort() {
    std::lock_guard<std::mutex> lock(mu);
    aborted = true;
    cv.notify_all();
  }

  const int size;
  const HostStaging* const staging;
  const int64_t timeout_ms;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  bool aborted = false;
  std::vector<Slot> slots;  // written by each rank before the first Wait of a collective
};

namespace {

float Load(const void* p, int64_t i, DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return Bf16ToFloat(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16:
      return HalfToFloat(static_cast<const uint16_t*>(p)[i]);
    default:
      return static_cast<const float*>(p)[i];
  }
}

void Store(float v, void* p, int64_t i, DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      static_cast<uint16_t*>(p)[i] = FloatToBf16(v);
      return;
    case DType::kF16:
      static_cast<uint16_t*>(p)[i] = FloatToHalf(v);
      return;
    default:
      static_cast<float*>(p)[i] = v;
  }
}

class InProcessCommunicator final : public Communicator {
 public:
  InProcessCommunicator(InProcessGroup::State* state, int rank) : s_(state), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return s_->size; }

  Status AllReduceSum(void* data, int64_t count, DType dtype, void* stream) override {
    if (dtype != DType::kF32 && dtype != DType::kBF16 && dtype != DType::kF16)
      return InvalidArgument("AllReduceSum: dtype {} is not F32, BF16 or F16", DTypeName(dtype));
    if (count < 0) return InvalidArgument("AllReduceSum: count {}", count);
    const size_t bytes = static_cast<size_t>(count) * DTypeSize(dtype);
    ITE_ASSIGN_OR_RETURN(const void* mine, Stage(data, bytes, stream));
    s_->slots[rank_] = {mine, count, dtype, 0};
    ITE_RETURN_IF_ERROR(s_->Wait());
    ITE_RETURN_IF_ERROR(SameShape());
    // fp32 sum in rank order: every rank computes the same value for every element.
    result_.resize(bytes);
    for (int64_t i = 0; i < count; ++i) {
      float acc = Load(s_->slots[0].data, i, dtype);
      for (int r = 1; r < s_->size; ++r) acc += Load(s_->slots[r].data, i, dtype);
      Store(acc, result_.data(), i, dtype);
    }
    ITE_RETURN_IF_ERROR(s_->Wait());  // nobody reads the posted buffers past here
    return Unstage(data, bytes, stream);
  }

  Status Broadcast(void* data, int64_t bytes, int root, void* stream) override {
    if (root < 0 || root >= s_->size || bytes < 0)
      return InvalidArgument("Broadcast: root {} of {} ranks, {} bytes", root, s_->size, bytes);
    const auto n = static_cast<size_t>(bytes);
    ITE_ASSIGN_OR_RETURN(const void* mine, Stage(data, n, stream));
    s_->slots[rank_] = {mine, bytes, DType::kF32, root};
    ITE_RETURN_IF_ERROR(s_->Wait());
    ITE_RETURN_IF_ERROR(SameShape());
    result_.resize(n);
    if (n > 0) std::memcpy(result_.data(), s_->slots[root].data, n);
    ITE_RETURN_IF_ERROR(s_->Wait());
    return rank_ == root ? Status::Ok() : Unstage(data, n, stream);
  }

  Status Barrier() override { return s_->Wait(); }
  bool failed() const override {
    std::lock_guard<std::mutex> lock(s_->mu);
    return s_->aborted;
  }

 private:
  // The rank's buffer as host memory: itself, or a staged copy.
  StatusOr<const void*> Stage(const void* data, size_t bytes, void* stream) {
    if (s_->staging == nullptr) return data;
    staged_.resize(bytes);
    if (bytes > 0) ITE_RETURN_IF_ERROR(s_->staging->ToHost(data, staged_.data(), bytes, stream));
    return static_cast<const void*>(staged_.data());
  }

  Status Unstage(void* data, size_t bytes, void* stream) {
    if (bytes == 0) return Status::Ok();
    if (s_->staging == nullptr) {
      std::memcpy(data, result_.data(), bytes);
      return Status::Ok();
    }
    return s_->staging->FromHost(result_.data(), data, bytes, stream);
  }

  // Every rank reads the same slots, so every rank fails alike (none is left waiting).
  Status SameShape() const {
    const State::Slot& first = s_->slots[0];
    for (int r = 1; r < s_->size; ++r) {
      const State::Slot& s = s_->slots[r];
      if (s.count != first.count || s.dtype != first.dtype || s.root != first.root)
        return InvalidArgument(
            "collective mismatch: rank 0 passed {} x {} (root {}), rank {} passed {} x {} "
            "(root {})",
            first.count, DTypeName(first.dtype), first.root, r, s.count, DTypeName(s.dtype),
            s.root);
    }
    return Status::Ok();
  }

  using State = InProcessGroup::State;
  State* s_;
  const int rank_;
  std::vector<uint8_t> staged_, result_;
};

}  // namespace

InProcessGroup::InProcessGroup(const InProcessGroupOptions& options)
    : state_(std::make_unique<State>(options)) {
  ITE_CHECK(options.size >= 1, "InProcessGroup of {} ranks", options.size);
  for (int r = 0; r < options.size; ++r)
    ranks_.push_back(std::make_unique<InProcessCommunicator>(state_.get(), r));
}

InProcessGroup::~InProcessGroup() = default;

Communicator* InProcessGroup::rank(int r) {
  ITE_CHECK(r >= 0 && r < static_cast<int>(ranks_.size()), "rank {} of {}", r, ranks_.size());
  return ranks_[r].get();
}

void InProcessGroup::Abort() { state_->Abort(); }

}  // namespace ite

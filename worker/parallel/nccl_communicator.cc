#include "worker/parallel/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

static_assert(ite::CommId::kBytes == NCCL_UNIQUE_ID_BYTES);

namespace ite {
namespace {

using Clock = std::chrono::steady_clock;

Status NcclError(ncclResult_t r, const char* what) {
  const std::string msg = fmt::format("{}: NCCL {}", what, ncclGetErrorString(r));
  // A peer that died or a broken connection: the group is gone, not a bad argument.
  if (r == ncclRemoteError || r == ncclSystemError) return Unavailable("{}", msg);
  if (r == ncclInvalidArgument || r == ncclInvalidUsage) return InvalidArgument("{}", msg);
  return Internal("{}", msg);
}

// Waits out a non-blocking call (ncclInProgress) until it succeeded, failed or `deadline`.
Status Settle(ncclComm_t comm, ncclResult_t r, const char* what, Clock::time_point deadline) {
  while (r == ncclInProgress) {
    if (Clock::now() >= deadline) return Unavailable("{}: timed out", what);
    std::this_thread::yield();
    if (ncclCommGetAsyncError(comm, &r) != ncclSuccess) break;
  }
  return r == ncclSuccess ? Status::Ok() : NcclError(r, what);
}

StatusOr<ncclDataType_t> NcclType(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return ncclFloat32;
    case DType::kBF16:
      return ncclBfloat16;
    case DType::kF16:
      return ncclFloat16;
    default:
      return InvalidArgument("NCCL all-reduce: dtype {} is not F32, BF16 or F16", DTypeName(dtype));
  }
}

// Enqueueing a collective is quick; a minute without progress means the group is stuck.
constexpr auto kCallTimeout = std::chrono::seconds(60);

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int size, int device)
      : comm_(comm), rank_(rank), size_(size), device_(device) {}

  ~NcclCommunicator() override {
    if (barrier_stream_ != nullptr) cudaStreamDestroy(barrier_stream_);
    if (barrier_buf_ != nullptr) cudaFree(barrier_buf_);
    ncclResult_t state = ncclSuccess;
    ncclCommGetAsyncError(comm_, &state);
    if (state == ncclSuccess) {
      const ncclResult_t r = ncclCommFinalize(comm_);
      if (!Settle(comm_, r, "ncclCommFinalize", Clock::now() + std::chrono::seconds(10)).ok()) {
        ncclCommAbort(comm_);
        return;
      }
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool capturable() const override { return true; }
  bool failed() const override {
    ncclResult_t state = ncclSuccess;
    if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) return true;
    return state != ncclSuccess && state != ncclInProgress;
  }

  Status AllReduceSum(void* data, int64_t count, DType dtype, void* stream) override {
    ITE_ASSIGN_OR_RETURN(ncclDataType_t type, NcclType(dtype));
    if (count < 0) return InvalidArgument("AllReduceSum: count {}", count);
    const ncclResult_t r = ncclAllReduce(data, data, static_cast<size_t>(count), type, ncclSum,
                                         comm_, static_cast<cudaStream_t>(stream));
    return Settle(comm_, r, "ncclAllReduce", Clock::now() + kCallTimeout);
  }

  Status Broadcast(void* data, int64_t bytes, int root, void* stream) override {
    if (root < 0 || root >= size_ || bytes < 0)
      return InvalidArgument("Broadcast: root {} of {} ranks, {} bytes", root, size_, bytes);
    const ncclResult_t r = ncclBroadcast(data, data, static_cast<size_t>(bytes), ncclUint8, root,
                                         comm_, static_cast<cudaStream_t>(stream));
    return Settle(comm_, r, "ncclBroadcast", Clock::now() + kCallTimeout);
  }

  // An all-reduce of one int on a stream of its own, waited for.
  Status Barrier() override {
    if (barrier_buf_ == nullptr) {
      if (cudaSetDevice(device_) != cudaSuccess ||
          cudaStreamCreateWithFlags(&barrier_stream_, cudaStreamNonBlocking) != cudaSuccess ||
          cudaMalloc(&barrier_buf_, sizeof(int32_t)) != cudaSuccess) {
        cudaGetLastError();
        return Internal("NCCL barrier: cannot allocate its stream or buffer on device {}", device_);
      }
    }
    const ncclResult_t r =
        ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclInt32, ncclSum, comm_, barrier_stream_);
    ITE_RETURN_IF_ERROR(Settle(comm_, r, "NCCL barrier", Clock::now() + kCallTimeout));
    const cudaError_t err = cudaStreamSynchronize(barrier_stream_);
    if (err != cudaSuccess) return Internal("NCCL barrier: {}", cudaGetErrorString(err));
    return Status::Ok();
  }

 private:
  ncclComm_t comm_;
  const int rank_, size_, device_;
  cudaStream_t barrier_stream_ = nullptr;
  void* barrier_buf_ = nullptr;
};

}  // namespace

StatusOr<CommId> NcclCreateId() {
  // Here, once and before any rank's thread starts: setenv is not safe beside other threads.
  setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
  ncclUniqueId raw;
  const ncclResult_t r = ncclGetUniqueId(&raw);
  if (r != ncclSuccess) return NcclError(r, "ncclGetUniqueId");
  CommId id;
  std::memcpy(id.bytes.data(), raw.internal, CommId::kBytes);
  return id;
}

StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(const CommId& id,
                                                               const NcclOptions& o) {
  if (o.size < 1 || o.rank < 0 || o.rank >= o.size)
    return InvalidArgument("NCCL group: rank {} of {} ranks", o.rank, o.size);
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess) {
    cudaGetLastError();
    devices = 0;
  }
  if (o.device < 0 || o.device >= devices)
    return FailedPrecondition("NCCL group rank {}: CUDA device {} requested, {} visible", o.rank,
                              o.device, devices);
  if (cudaSetDevice(o.device) != cudaSuccess) {
    cudaGetLastError();
    return Internal("NCCL group rank {}: cannot use CUDA device {}", o.rank, o.device);
  }
  ncclUniqueId raw;
  std::memcpy(raw.internal, id.bytes.data(), CommId::kBytes);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  const ncclResult_t r = ncclCommInitRankConfig(&comm, o.size, raw, o.rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) return NcclError(r, "ncclCommInitRankConfig");
  const Status joined = Settle(comm, r, "NCCL group start-up",
                               Clock::now() + std::chrono::milliseconds(o.init_timeout_ms));
  if (!joined.ok()) {
    ncclCommAbort(comm);
    return Unavailable("NCCL group rank {} of {} on device {}: {} (after {} ms: are all ranks up?)",
                       o.rank, o.size, o.device, joined.message(), o.init_timeout_ms);
  }
  return std::unique_ptr<Communicator>(
      std::make_unique<NcclCommunicator>(comm, o.rank, o.size, o.device));
}

}  // namespace ite

#include "worker/parallel/communicator.h"

#include <algorithm>

namespace ite {

Status CheckShardCommunicator(const ModelConfig& config, const Communicator* comm) {
  const TensorShard& s = config.shard;
  if (s.size <= 1) {
    if (comm != nullptr && comm->size() > 1)
      return InvalidArgument(
          "a group of {} ranks for a model loaded whole (tensor parallel size 1)", comm->size());
    return Status::Ok();
  }
  if (comm == nullptr)
    return InvalidArgument("rank {} of a tensor-parallel size {} model needs its group", s.rank,
                           s.size);
  if (comm->size() != s.size || comm->rank() != s.rank)
    return InvalidArgument("model shard {} of {} given the communicator of rank {} of {}", s.rank,
                           s.size, comm->rank(), comm->size());
  return Status::Ok();
}

StatusOr<int64_t> GroupMin(Communicator* comm, int64_t value, void* scratch, void* stream,
                           const std::function<Status(const void* scratch, int64_t* out)>& read,
                           const std::function<Status(int64_t in, void* scratch)>& write) {
  int64_t min = value;
  for (int root = 0; root < comm->size(); ++root) {
    if (root == comm->rank()) ITE_RETURN_IF_ERROR(write(value, scratch));
    ITE_RETURN_IF_ERROR(comm->Broadcast(scratch, sizeof(int64_t), root, stream));
    int64_t v = 0;
    ITE_RETURN_IF_ERROR(read(scratch, &v));
    min = std::min(min, v);
  }
  return min;
}

}  // namespace ite

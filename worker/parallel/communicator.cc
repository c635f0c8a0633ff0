#include "worker/parallel/communicator.h"

namespace ite {

Status CheckShardCommunicator(const ModelConfig& config, const Communicator* comm) {
  const TensorShard& s = config.shard;
  if (s.size <= 1) {
    if (comm != nullptr && comm->size() > 1)
      return InvalidArgument("a group of {} ranks for a model loaded whole (tensor parallel size 1)",
                             comm->size());
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

}  // namespace ite

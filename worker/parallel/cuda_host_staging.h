// HostStaging for device buffers: the in-process group's copies to and from the host on the
// rank's stream, each waited for (tests of the CUDA backend's sharding on one GPU).
#pragma once

#include "worker/parallel/in_process_communicator.h"

namespace ite {

class CudaHostStaging final : public HostStaging {
 public:
  Status ToHost(const void* src, void* host, size_t bytes, void* stream) const override;
  Status FromHost(const void* host, void* dst, size_t bytes, void* stream) const override;
};

}  // namespace ite

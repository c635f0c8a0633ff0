// WorkerClient over a WorkerEngine in this process (tests, single-process serving). It lives with
// the worker so that the scheduler, which sees only the WorkerClient interface, links nothing of
// the engine.
#pragma once

#include <memory>

#include "common/protocol/worker_client.h"
#include "worker/service/worker_engine.h"

namespace ite {

// Runs `engine` on a thread of its own; Info/Health/Clear are served between steps.
std::unique_ptr<WorkerClient> MakeInProcessWorkerClient(std::unique_ptr<WorkerEngine> engine);

}  // namespace ite

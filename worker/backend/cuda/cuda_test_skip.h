// A test that needs a GPU skips, rather than fails, where none is visible: CI and the developer
// machines build every CUDA test but have no device.
#pragma once

#include <gtest/gtest.h>

#include "worker/backend/cuda/cuda_backend.h"

#define ITE_SKIP_WITHOUT_CUDA() \
  if (::ite::CudaDeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device visible"

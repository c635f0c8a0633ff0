#!/usr/bin/env bash
# Configures and builds with the one command line every build uses: scripts/test.sh (CI) and
# the container images (deploy/docker), so an image is built exactly as CI builds.
#   scripts/build.sh BUILD_DIR [TARGET...]      (no target: everything)
# nvcc on PATH (or in /usr/local/cuda/bin) turns the CUDA build on. Extra cmake options come
# from ITE_CMAKE_ARGS (word-split; a developer's ccache launchers, say); ITE_BUILD_JOBS caps
# the parallel jobs (default: every core).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:?usage: scripts/build.sh BUILD_DIR [TARGET...]}"
shift
export PATH="$PATH:/usr/local/cuda/bin"
# Said explicitly: a build folder that scripts/demo.sh configured without CUDA (no GPU there)
# must still compile the CUDA code here when nvcc exists.
cuda=OFF
command -v nvcc >/dev/null 2>&1 && cuda=ON
# shellcheck disable=SC2086  # ITE_CMAKE_ARGS is a list of words on purpose
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DITE_WERROR=ON \
  -DITE_WITH_CUDA="$cuda" -DPython3_EXECUTABLE="$root/.venv/bin/python" ${ITE_CMAKE_ARGS:-} \
  >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$build" -j"${ITE_BUILD_JOBS:-$(nproc)}" "${targets[@]}"

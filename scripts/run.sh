#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs `lutq bench-kernels` (LUT-GEMM
# against dense fp32 and OpenBLAS on this machine). Extra arguments go to bench-kernels,
# e.g. scripts/run.sh --quick.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh -DLUTQ_BUILD_TESTS=OFF
"${LUTQ_BUILD_DIR:-build}/lutq" bench-kernels "$@"

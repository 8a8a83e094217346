#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test suite with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh -DLUTQ_BUILD_TESTS=ON -DLUTQ_WERROR=ON
build_dir="${LUTQ_BUILD_DIR:-build}"
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)"

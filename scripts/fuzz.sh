#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/*_fuzz.cc, clang + ASan/UBSan) and runs each for a short
# while over a copy of its seed corpus (fuzz/corpus/NAME) with its dictionary (fuzz/NAME.dict when
# present). Exits non-zero on the first crash, leak or sanitizer report.
#   LUTQ_FUZZ_SECONDS  time per target (default 30)
#   LUTQ_FUZZ_BUILD    build folder (default build-fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${LUTQ_FUZZ_SECONDS:-30}"
build_dir="${LUTQ_FUZZ_BUILD:-build-fuzz}"
cxx="$(command -v clang++-14 || command -v clang++ || true)"
if [[ -z "$cxx" ]]; then
  echo "lutq: fuzz: no clang++ found (scripts/install-deps.sh installs clang-14)" >&2
  exit 1
fi
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" -DLUTQ_FUZZ=ON -DLUTQ_BUILD_TESTS=OFF \
  -DLUTQ_CUDA=OFF -Wno-dev >/dev/null
targets=()
for src in fuzz/*_fuzz.cc; do targets+=("$(basename "$src" .cc)"); done
cmake --build "$build_dir" --target "${targets[@]}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  name="${t%_fuzz}"
  corpus="$work/$name"
  mkdir -p "$corpus"
  if [[ -d "fuzz/corpus/$name" ]]; then cp -r "fuzz/corpus/$name/." "$corpus/"; fi
  args=(-max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$work/$t-")
  if [[ -f "fuzz/$name.dict" ]]; then args+=(-dict="fuzz/$name.dict"); fi
  echo "lutq: fuzzing $t for ${seconds}s ($(ls "$corpus" | wc -l) seeds)"
  if ! "$build_dir/$t" "${args[@]}" "$corpus" >"$work/$t.log" 2>&1; then
    tail -n 60 "$work/$t.log" >&2
    ls "$work"/"$t"-* >&2 2>/dev/null || true
    echo "lutq: fuzz: $t FAILED" >&2
    exit 1
  fi
  grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$work/$t.log" | tail -n 2
done
echo "lutq: fuzz: ${#targets[@]} targets ran ${seconds}s each without a finding"

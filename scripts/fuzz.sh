#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/*_fuzz.cc, clang + ASan/UBSan) and runs each over a copy of
# its seed corpus (fuzz/corpus/NAME) with its dictionary (fuzz/NAME.dict when present), the
# targets side by side (one per core). Exits non-zero on the first crash, leak or sanitizer report.
#   LUTQ_FUZZ_RUNS     inputs per target (default 1000000)
#   LUTQ_FUZZ_SECONDS  safety cap per target in seconds (default 600, so the suite stays under 30
#                      minutes on 2 cores); a target stopped by it says how many inputs it ran
#                      (json_schema_fuzz, the slowest at ~4,000 inputs/s of one core, needs ~250 s; it starts
#                      first so the other targets run beside it)
#   LUTQ_FUZZ_JOBS     targets at once (default: the number of cores)
#   LUTQ_FUZZ_BUILD    build folder (default build-fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${LUTQ_FUZZ_RUNS:-1000000}"
seconds="${LUTQ_FUZZ_SECONDS:-600}"
jobs="${LUTQ_FUZZ_JOBS:-$(nproc)}"
build_dir="${LUTQ_FUZZ_BUILD:-build-fuzz}"
cxx="$(command -v clang++-14 || command -v clang++ || true)"
if [[ -z "$cxx" ]]; then
  echo "lutq: fuzz: no clang++ found (scripts/install-deps.sh installs clang-14)" >&2
  exit 1
fi
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" -DLUTQ_FUZZ=ON -DLUTQ_BUILD_TESTS=OFF \
  -DLUTQ_CUDA=OFF -Wno-dev >/dev/null
targets=()
# The slowest target first, so that the others run beside it rather than after it.
[[ -f fuzz/json_schema_fuzz.cc ]] && targets+=(json_schema_fuzz)
for src in fuzz/*_fuzz.cc; do
  t="$(basename "$src" .cc)"
  [[ "$t" == json_schema_fuzz ]] || targets+=("$t")
done
cmake --build "$build_dir" --target "${targets[@]}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fuzz_one() {
  local t="$1" name="${1%_fuzz}"
  local corpus="$work/$name"
  mkdir -p "$corpus"
  if [[ -d "fuzz/corpus/$name" ]]; then cp -r "fuzz/corpus/$name/." "$corpus/"; fi
  local args=(-runs="$runs" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048
              -print_final_stats=1 -artifact_prefix="$work/$t-")
  if [[ -f "fuzz/$name.dict" ]]; then args+=(-dict="fuzz/$name.dict"); fi
  if ! "$build_dir/$t" "${args[@]}" "$corpus" >"$work/$t.log" 2>&1; then
    tail -n 60 "$work/$t.log" >&2
    ls "$work"/"$t"-* >&2 2>/dev/null || true
    echo "lutq: fuzz: $t FAILED" >&2
    return 1
  fi
  local done_runs
  done_runs="$(grep -E "stat::number_of_executed_units" "$work/$t.log" | grep -oE "[0-9]+$" || echo 0)"
  local note=""
  if ((done_runs < runs)); then
    note=" (stopped by the ${seconds}s cap before $runs)"
    touch "$work/$t.capped"
  fi
  echo "lutq: fuzz: $t: $done_runs inputs$note, $(grep -oE "stat::peak_rss_mb: *[0-9]+" "$work/$t.log" | grep -oE "[0-9]+$") MB peak"
}
echo "lutq: fuzzing ${targets[*]}: $runs inputs each, $jobs at a time"
for t in "${targets[@]}"; do
  (fuzz_one "$t" && touch "$work/$t.ok") &
  while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
done
wait
for t in "${targets[@]}"; do [[ -f "$work/$t.ok" ]] || exit 1; done
capped=()
for t in "${targets[@]}"; do [[ -f "$work/$t.capped" ]] && capped+=("$t"); done
if ((${#capped[@]} == 0)); then
  echo "lutq: fuzz: ${#targets[@]} targets ran $runs inputs each without a finding"
else
  echo "lutq: fuzz: ${#targets[@]} targets without a finding; stopped by the cap before $runs inputs: ${capped[*]}"
fi

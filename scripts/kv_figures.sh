#!/usr/bin/env bash
# The attention-memory figures of docs/memory.md: perplexity and KL to the fp32 cache on
# sotu-eval for every --kv-cache mode, and decode speed at a few context depths.
#   scripts/kv_figures.sh MODEL OUT_DIR [CTX] [CHUNKS] [MODES...]
# Writes OUT_DIR/ppl-CTX-MODE.txt (stdout + stderr of lutq perplexity; PPL=0 skips them) and,
# with BENCH=1, OUT_DIR/bench-MODE-DEPTH.txt (decode of 16 tokens after DEPTHS positions).
# The f32 mode must run first (or earlier): the others take their KL against its log-probs. scripts/kv_figures.py turns them into the table and the plot.
set -euo pipefail
model="$1"
out="$2"
ctx="${3:-512}"
chunks="${4:-10}"
shift $(( $# < 4 ? $# : 4 ))
modes=("$@")
if ((${#modes[@]} == 0)); then
  modes=(f32 f16 q8 q4 xquant:8 xquant:4 xquant:3 xquant:2 xquant-cl:4 xquant-cl:3 xquant-cl:2)
fi
lutq="${LUTQ:-build/lutq}"
text="${TEXT:-../shared/data/text/sotu-eval.txt}"
threads="${THREADS:-2}"
mkdir -p "$out"
base="$out/base-$ctx.lpf"
for mode in "${modes[@]}"; do
  [[ "${PPL:-1}" == 1 ]] || break
  log="$out/ppl-$ctx-${mode/:/_}.txt"
  if [[ "$mode" == f32 ]]; then
    "$lutq" perplexity "$model" -f "$text" --ctx "$ctx" --chunks "$chunks" -t "$threads" --save-logits "$base" >"$log" 2>&1
  else
    "$lutq" perplexity "$model" -f "$text" --ctx "$ctx" --chunks "$chunks" -t "$threads" --kv-cache "$mode" \
      --kl-base "$base" >"$log" 2>&1
  fi
  echo "$mode: $(grep -E '^PPL|KL' "$log" | tr '\n' ' ')"
done
if [[ "${BENCH:-0}" == 1 ]]; then
  for mode in "${modes[@]}"; do
    for depth in ${DEPTHS:-128 1024 4096}; do
      "$lutq" bench "$model" --pp 0 --tg 16 --reps 1 --bench-threads "$threads" --probe-mib 64 --depth "$depth" \
        --kv-cache "$mode" >"$out/bench-${mode/:/_}-$depth.txt" 2>&1
      echo "$mode depth $depth: $(grep -E ' tg16 ' "$out/bench-${mode/:/_}-$depth.txt")"
    done
  done
fi

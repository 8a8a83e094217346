#!/usr/bin/env bash
# Installs the Debian packages lutq builds with, skipping those already present.
set -euo pipefail

packages=(cmake ninja-build g++ libgtest-dev libbenchmark-dev libopenblas-dev libcli11-dev nlohmann-json3-dev
  libboost-dev pkg-config clang-14 libclang-rt-14-dev libopenmpi-dev openmpi-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "lutq: installing ${missing[*]}" >&2
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"

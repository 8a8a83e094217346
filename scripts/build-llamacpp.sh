#!/usr/bin/env bash
# Builds llama.cpp, the peer every benchmark compares with, from the source that the PyPI
# package llama-cpp-python ships (its sdist vendors llama.cpp; no other network than PyPI).
# Tools built: llama-quantize, llama-imatrix, llama-perplexity, llama-bench, and test-backend-ops
# (its `perf` mode times one ggml op per type: scripts/kernels_vs_llamacpp.py's kernel baseline).
# Result: build-llamacpp/bin/ (git-ignored). Prints that directory. Idempotent.
#   LLAMACPP_PY_VERSION  llama-cpp-python version (default 0.3.36, llama.cpp of 2026)
#   LLAMACPP_NATIVE      ON (default: every ISA this CPU has) or OFF
#   LLAMACPP_JOBS        build jobs (default: nproc)
#   LLAMACPP_AMX         ON or OFF (default): with OFF a native build leaves out llama.cpp's AMX
#                        matmul even where cpuid offers AMX. On an Intel Xeon here (AMX tile/int8/bf16
#                        in cpuid, XCR0 tile state enabled, arch_prctl(ARCH_REQ_XCOMP_PERM) granted to
#                        a process that asks) llama-cpp-python 0.3.36's ggml died with SIGILL on its
#                        first `tilezero` (llama-imatrix on the 1.5B): its AMX path is not usable here.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${LLAMACPP_PY_VERSION:-0.3.36}"
native="${LLAMACPP_NATIVE:-ON}"
amx="${LLAMACPP_AMX:-OFF}"
isa_flags=""
if [[ $native == ON && $amx == OFF ]]; then
  # Explicit -mno-* flags win over -march=native whatever their order (GCC and clang).
  isa_flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
fi
jobs="${LLAMACPP_JOBS:-$(nproc)}"
root=build-llamacpp
bin="$root/bin"
tools=(llama-quantize llama-imatrix llama-perplexity llama-bench test-backend-ops)
have_all=1
for t in "${tools[@]}"; do [[ -x "$bin/$t" ]] || have_all=0; done
if [[ $have_all == 1 ]]; then
  echo "$bin"
  exit 0
fi
for cmd in cmake ninja python3; do
  if ! command -v "$cmd" >/dev/null; then
    echo "lutq: build-llamacpp: $cmd is needed (run scripts/build.sh once: it installs the toolchain)" >&2
    exit 1
  fi
done
mkdir -p "$root"
sdist="$root/llama_cpp_python-$version.tar.gz"
if [[ ! -f "$sdist" ]]; then
  echo "lutq: build-llamacpp: fetching llama-cpp-python==$version (source) from PyPI" >&2
  python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$root" "llama-cpp-python==$version" >&2
fi
src="$root/llama_cpp_python-$version/vendor/llama.cpp"
if [[ ! -f "$src/CMakeLists.txt" ]]; then
  echo "lutq: build-llamacpp: unpacking $sdist" >&2
  tar -xzf "$sdist" -C "$root"
fi
if [[ ! -f "$src/CMakeLists.txt" ]]; then
  echo "lutq: build-llamacpp: error: $sdist has no vendor/llama.cpp/CMakeLists.txt" >&2
  exit 1
fi
echo "lutq: build-llamacpp: building ${tools[*]} (GGML_NATIVE=$native, $jobs jobs; several minutes)" >&2
cmake -S "$src" -B "$root/cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE="$native" \
  -DCMAKE_C_FLAGS="$isa_flags" -DCMAKE_CXX_FLAGS="$isa_flags" \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=ON -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON >&2
cmake --build "$root/cmake" -j "$jobs" --target "${tools[@]}" >&2
mkdir -p "$bin"
for t in "${tools[@]}"; do cp "$root/cmake/bin/$t" "$bin/$t"; done
echo "$bin"

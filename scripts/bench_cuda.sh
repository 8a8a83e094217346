#!/usr/bin/env bash
# The CUDA check on a GPU host, in one command: configure and build with CUDA, run the CUDA tests
# (the grid against the double reference), then the benchmark (LUT and MMA kernels vs cuBLAS fp16
# at 4096x4096, 11008x4096, 7168x28672 (n x k), q = 2,3,4, g = 128, m = 1,4,8,16,32, with a
# measured HBM bandwidth). Nothing in the CUDA backend has been run on a GPU before this script.
#
#   scripts/bench_cuda.sh              # build + tests + benchmark
#   scripts/bench_cuda.sh --quick      # benchmark only 4096x4096, m = 1 and 8
#   LUTQ_SANITIZE=1 scripts/bench_cuda.sh   # also run the CUDA tests under compute-sanitizer
#
# compute-sanitizer by hand (memcheck catches out-of-bounds and misaligned device accesses;
# racecheck the shared-memory table hazards of the LUT kernel):
#   compute-sanitizer --tool memcheck  build-cuda/lutq_tests --gtest_filter='Cuda*:*Cuda*'
#   compute-sanitizer --tool racecheck build-cuda/lutq_tests --gtest_filter='Cuda/CudaGrid.*q2_g128_oc*'
# Extra arguments go to lutq_bench_cuda (--reps N, --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build_dir="${LUTQ_BUILD_DIR:-build-cuda}"
nvcc_path="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
[ -x "$nvcc_path" ] || { echo "bench_cuda.sh: no nvcc (PATH or /usr/local/cuda/bin)" >&2; exit 1; }
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLUTQ_CUDA=ON -DLUTQ_WERROR=ON \
  -DCMAKE_CUDA_COMPILER="$nvcc_path" ${LUTQ_CUDA_ARCHS:+-DCMAKE_CUDA_ARCHITECTURES="$LUTQ_CUDA_ARCHS"}
cmake --build "$build_dir" -j "$(nproc)" --target lutq_tests lutq_bench_cuda
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv || true
# The CUDA tests must run, not skip: fail if no device is visible.
"$build_dir/lutq_tests" --gtest_filter='Cuda*:*Cuda*:Kernel*' --gtest_brief=1
probe="$("$build_dir/lutq_tests" --gtest_filter='Cuda/CudaGrid.*q2_g128_oc' 2>&1 || true)"
if grep -q SKIPPED <<<"$probe"; then
  echo "bench_cuda.sh: the CUDA grid skipped: no usable device" >&2
  exit 1
fi
if [ "${LUTQ_SANITIZE:-0}" = 1 ]; then
  compute-sanitizer --tool memcheck --error-exitcode 1 "$build_dir/lutq_tests" \
    --gtest_filter='Cuda/CudaGrid.*q3_g128*:Cuda/CudaGrid.*q8_gfull*:CudaWide*' --gtest_brief=1
  compute-sanitizer --tool racecheck --error-exitcode 1 "$build_dir/lutq_tests" \
    --gtest_filter='Cuda/CudaGrid.*q2_g32_ic_offset' --gtest_brief=1
fi
"$build_dir/lutq_bench_cuda" "$@"

#!/usr/bin/env bash
# The tensor-parallel figures of docs/scale-out.md: `lutq bench` (prefill and decode tokens/s) as
# 1 process x 1 and x 2 threads, and 2 processes x 1 thread over shared memory (vader), TCP on
# loopback, and TCP between two network namespaces (scripts/tp_netns.sh); then the latency of one
# all-reduce of an n_embd vector on each transport (lutq_allreduce_bench).
#   scripts/tp_figures.sh BUILD_DIR MODEL [N_EMBD=576] [ROUNDS=1]
# Timings on a shared machine are indicative; the rounds are interleaved to spread its load.
set -euo pipefail
build=$1 model=$2 n_embd=${3:-576} rounds=${4:-1}
bench=(bench "$model" --pp 64 --tg 32 --reps 3 --probe-mib 16)
# 2 ranks on a loaded 2-core host: no binding, and a waiting rank yields its core (measured best
# here; on an idle host with a core per rank, --bind-to core).
mpirun=(mpirun --allow-run-as-root --bind-to none --mca mpi_yield_when_idle 1 --mca pml ob1
        --mca btl_vader_single_copy_mechanism none)
summary() { grep -E "^ +[0-9]+ +(pp|tg)|comm:" || true; }
for ((r = 1; r <= rounds; ++r)); do
  echo "== round $r, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "-- 1 process x 1 thread";  timeout 600 "$build/lutq" "${bench[@]}" --bench-threads 1 2>/dev/null | summary
  echo "-- 1 process x 2 threads"; timeout 600 "$build/lutq" "${bench[@]}" --bench-threads 2 2>/dev/null | summary
  echo "-- 2 processes x 1 thread, shared memory"
  timeout 600 "${mpirun[@]}" --mca btl self,vader -np 2 "$build/lutq" "${bench[@]}" --bench-threads 1 2>/dev/null | summary
  echo "-- 2 processes x 1 thread, TCP loopback"
  timeout 600 "${mpirun[@]}" --mca btl self,tcp -np 2 "$build/lutq" "${bench[@]}" --bench-threads 1 2>/dev/null | summary
  echo "-- 2 processes x 1 thread, TCP between two network namespaces"
  "$(dirname "$0")/tp_netns.sh" --timeout 600 "$build/lutq" "${bench[@]}" --bench-threads 1 2>/dev/null | summary
done
echo "== all-reduce of $n_embd floats"
for btl in self,vader self,tcp; do
  echo -n "-- $btl: "; timeout 120 "${mpirun[@]}" --mca btl "$btl" -np 2 "$build/lutq_allreduce_bench" "$n_embd" 3000
done
echo -n "-- TCP between namespaces: "
"$(dirname "$0")/tp_netns.sh" --timeout 120 "$build/lutq_allreduce_bench" "$n_embd" 3000 2>/dev/null | tail -1

#!/usr/bin/env bash
# ctest mpi_tp_load_failure: under `mpirun -np 2 lutq run`, a rank that cannot open its model file,
# or holds a different one, makes every rank exit non-zero with the reason, within a timeout
# (never a hang). Usage: load_failure.sh MPIEXEC LUTQ LUTQ_MPI_TESTS
set -u
mpiexec=$1 lutq=$2 tests=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$tests" --write-tiny "$dir/tiny.gguf" 7 || { echo "FAIL: cannot write the tiny model"; exit 1; }
"$tests" --write-tiny "$dir/other.gguf" 8 || exit 1
mpirun=("$mpiexec" --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl self,vader,tcp
        --mca btl_vader_single_copy_mechanism none)
failures=0

# expect_failure NAME PATTERN... -- FILE_OF_RANK_0 FILE_OF_RANK_1
expect_failure() {
  local name=$1 f0=$2 f1=$3
  shift 3
  local out rc
  out=$(timeout 60 "${mpirun[@]}" -np 1 "$lutq" run "$f0" -p hi -n 2 : -np 1 "$lutq" run "$f1" -p hi -n 2 2>&1)
  rc=$?
  if ((rc == 124)); then
    echo "FAIL $name: still running after 60 s (a rank hung)"; failures=$((failures + 1)); return
  fi
  if ((rc == 0)); then
    echo "FAIL $name: exit status 0"; echo "$out"; failures=$((failures + 1)); return
  fi
  for pattern in "$@"; do
    if ! grep -q -- "$pattern" <<<"$out"; then
      echo "FAIL $name: no '$pattern' in the output:"; echo "$out"; failures=$((failures + 1)); return
    fi
  done
  echo "ok   $name: exit $rc: $(grep 'lutq: error' <<<"$out" | head -1)"
}

expect_failure missing_file "$dir/tiny.gguf" "$dir/missing.gguf" "rank 1 of 2" "missing.gguf"
expect_failure missing_on_rank0 "$dir/missing.gguf" "$dir/tiny.gguf" "rank 0 of 2" "missing.gguf"
# Either rank may report first: rank 1 about itself, or rank 0 naming rank 1.
expect_failure other_file "$dir/tiny.gguf" "$dir/other.gguf" "differ" "rank 1 of 2\|rank(s) 1 hold"
exit $((failures > 0))

#!/usr/bin/env python3
"""lutq's GEMM kernels against llama.cpp's on the same machine, in one run.

lutq: `lutq bench-kernels` on random BCQ weights (hot: one warm copy; the LUT path and, where the
CPU has it, the int8 path), fast tables, the best ISA. llama.cpp: `test-backend-ops perf -o MUL_MAT`
(built by scripts/build-llamacpp.sh from llama-cpp-python's source), whose perf cases include
the 4096x14336 matrix at n = 1, 2, 3, 4, 5, 8 and 512 activation columns for every ggml type; it
runs the CPU backend on hardware_concurrency / 2 threads (1 on a 2-core machine) with the weights
warm, so the lutq side is timed on that many threads too.

Prints one markdown row per (bits, m): lutq's LUT and int8 medians, llama.cpp's time for each type
of those bits, and llama.cpp time / lutq best (above 1: lutq is faster). Usage:

    scripts/kernels_vs_llamacpp.py [--bits 2,3,4] [--m 1,8] [--group 128] [--lutq build/lutq]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# llama.cpp types compared at each bit count (K-quants, plus the ternary tq2_0 at 2 bits).
LLAMA_TYPES = {2: ["q2_K", "tq2_0"], 3: ["q3_K"], 4: ["q4_K", "iq4_xs"]}
# llama.cpp's perf cases for this shape (test_mul_mat(type, f32, 4096, bs, 14336)).
LLAMA_N = {1, 2, 3, 4, 5, 8, 512}
PERF_LINE = re.compile(r"MUL_MAT\(type_a=(\w+),type_b=f32,m=(\d+),n=(\d+),k=(\d+),bs=\[1,1\],nr=\[1,1\].*?"
                       r"(\d+) runs -\s+([\d.]+) us/run")


def run(cmd):
    print("$", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"kernels_vs_llamacpp: {cmd[0]} failed ({res.returncode}):\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return res.stdout


def lutq_rows(args, shape, threads):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        run([args.lutq, "bench-kernels", "--shapes", shape, "--group", args.group, "--bits", args.bits,
             "--m", args.m, "--threads", threads, "--precision", "fast", "--path", "lut,int8", "--regime", "hot",
             "--kind", "bcq", "--no-baseline", "--json", out] + (["--isa", args.isa] if args.isa else []))
        data = json.loads(out.read_text())
    # Without --isa every backend the CPU runs is timed: keep the best one's rows.
    isas = [r["backend"].split("+")[0] for r in data["rows"]]
    best = next(i for i in ("avx512", "avx2", "scalar", "ref") if i in isas)
    rows = {}
    for r in data["rows"]:
        isa, path = r["backend"].split("+")
        if isa == best:
            rows[(r["q"], r["m"], path)] = r["median_ms"]
    return rows, f"{data['machine']['cpu']}, lutq backend {best}"


def llama_rows(args, ms):
    types = sorted({t for q in args.bits.split(",") for t in LLAMA_TYPES.get(int(q), [])})
    ns = [m for m in ms if m in LLAMA_N]
    if not types or not ns:
        return {}
    regex = f"type_a=({'|'.join(types)}),type_b=f32,m=4096,n=({'|'.join(map(str, ns))}),k=14336,bs=\\[1,1\\],nr=\\[1,1\\]"
    out = run([args.llama_bin / "test-backend-ops", "perf", "-o", "MUL_MAT", "-b", "CPU", "-p", regex])
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)
    rows = {}
    for match in PERF_LINE.finditer(out):
        qtype, n = match.group(1), int(match.group(3))
        rows[(qtype, n)] = float(match.group(6)) / 1000.0
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bits", default="2,3,4")
    ap.add_argument("--m", default="1,8")
    ap.add_argument("--group", default="128")
    ap.add_argument("--isa", default="", help="lutq backend (default: the best this CPU runs)")
    ap.add_argument("--lutq", type=Path, default=ROOT / "build" / "lutq")
    ap.add_argument("--llama-bin", type=Path, default=ROOT / "build-llamacpp" / "bin")
    args = ap.parse_args()
    if not (args.llama_bin / "test-backend-ops").exists():
        sys.exit(f"kernels_vs_llamacpp: no {args.llama_bin / 'test-backend-ops'}: run scripts/build-llamacpp.sh")
    threads = str(max(1, (os.cpu_count() or 2) // 2))
    ms = [int(m) for m in args.m.split(",")]
    llama = llama_rows(args, ms)
    lutq, cpu = lutq_rows(args, "4096x14336", threads)
    print(f"4096x14336, {threads} thread(s), weights hot, medians in ms; {cpu}; lutq g = {args.group}, fast tables")
    print()
    print("| bits | m | lutq LUT | lutq int8 | llama.cpp | llama.cpp / lutq best |")
    print("|---|---|---|---|---|---|")
    for q in (int(b) for b in args.bits.split(",")):
        for m in ms:
            lut, int8 = lutq.get((q, m, "lut")), lutq.get((q, m, "int8"))
            best = min(t for t in (lut, int8) if t is not None)
            peers = [(t, llama[(t, m)]) for t in LLAMA_TYPES.get(q, []) if (t, m) in llama]
            peer_text = ", ".join(f"{t} {ms_:.3f}" for t, ms_ in peers) or "-"
            ratio_text = ", ".join(f"{t} {ms_ / best:.2f}x" for t, ms_ in peers) or "-"
            int8_text = f"{int8:.3f}" if int8 is not None and int8 != lut else "-"
            print(f"| {q} | {m} | {lut:.3f} | {int8_text} | {peer_text} | {ratio_text} |")


if __name__ == "__main__":
    main()

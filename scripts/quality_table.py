#!/usr/bin/env python3
"""Regenerates docs/quality.md (and docs/quality.png): perplexity, KL divergence to the fp32
reference, top-1 agreement, bits per weight, file size and decode tokens/s of the default model
quantized by each method, on ../shared/data/text/sotu-eval.txt.

Every row is measured here, by the lutq binary: `lutq quantize` (its summary gives bpw), `lutq
perplexity --kl-base` against the fp32 run's saved log-probs, `lutq bench --pp 0` style decode.
Results are cached in BUILD/quality/results.json so a rerun only measures new rows (--fresh
discards them). Usage:

    scripts/quality_table.py [--chunks 20] [--only NAME,...] [--fresh] [--no-speed]
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

# (name, method label, bits, quantize arguments); g=128 requested everywhere (SmolLM2's 576-wide
# inputs adapt it to 64, see the note in the output).
def configs():
    rows = [("fp32", "fp32 (reference)", 32, None)]
    for q in (4, 3, 2):
        rows.append((f"rtn-q{q}", "RTN uniform", q, ["--quant-method", "rtn", "-q", str(q), "-g", "128"]))
        rows.append((f"greedy-q{q}", "BCQ greedy", q, ["--quant-method", "greedy", "-q", str(q), "-g", "128"]))
        rows.append((f"alt-q{q}", "BCQ alternating", q, ["--quant-method", "alternating", "-q", str(q), "-g", "128"]))
    return rows


def run(cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("LUTQ_BUILD_DIR", str(ROOT / "build")))
    ap.add_argument("--model", default=None, help="source GGUF (default: scripts/fetch-model.sh)")
    ap.add_argument("--text", default=str(SHARED / "sotu-eval.txt"))
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated row names to (re)measure")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--no-speed", action="store_true", help="skip the decode timing")
    ap.add_argument("--out", default=str(ROOT / "docs" / "quality.md"))
    a = ap.parse_args()

    lutq = Path(a.build) / "lutq"
    if not lutq.exists():
        sys.exit(f"{lutq} not found: build first (scripts/build.sh)")
    if not Path(a.text).exists():
        sys.exit(f"{a.text} not found (../shared/data is needed for the quality table)")
    model = a.model or run(["bash", str(ROOT / "scripts" / "fetch-model.sh")], cwd=ROOT).stdout.strip()
    model = str((ROOT / model).resolve()) if not os.path.isabs(model) else model
    work = Path(a.build) / "quality"
    work.mkdir(parents=True, exist_ok=True)
    cache_path = work / "results.json"
    results = {} if a.fresh or not cache_path.exists() else json.loads(cache_path.read_text())
    only = set(filter(None, a.only.split(",")))
    base_logits = work / "fp32.logprobs"

    for name, label, bits, qargs in configs():
        if name in results and name not in only and (name != "fp32" or base_logits.exists()):
            continue
        row = {"name": name, "method": label, "bits": bits}
        target = model
        if qargs is not None:
            target = str(work / f"{name}.lutq")
            t0 = time.time()
            out = run([lutq, "quantize", model, target, "-t", str(a.threads)] + qargs).stdout
            row["quantize_s"] = round(time.time() - t0, 1)
            m = re.search(r"block linear layers: ([0-9.]+) bits per weight", out)
            row["bpw"] = float(m.group(1))
            row["file_mib"] = round(os.path.getsize(target) / 2**20, 1)
        else:
            row["bpw"] = 32.0
            row["file_mib"] = round(os.path.getsize(model) / 2**20, 1)
        ppl_cmd = [lutq, "perplexity", target, "-f", a.text, "--chunks", str(a.chunks), "-t", str(a.threads)]
        ppl_cmd += ["--save-logits", str(base_logits)] if qargs is None else ["--kl-base", str(base_logits)]
        out = run(ppl_cmd).stdout
        m = re.search(r"^PPL = ([0-9.]+) ± ([0-9.]+)", out, re.M)
        row["ppl"], row["ppl_err"] = float(m.group(1)), float(m.group(2))
        m = re.search(r"mean KL\(base \|\| this\) = ([0-9.]+).*top-1 agreement = ([0-9.]+)%", out)
        row["kl"], row["top1"] = (float(m.group(1)), float(m.group(2))) if m else (0.0, 100.0)
        if not a.no_speed:
            out = run([lutq, "bench", target, "--pp", "1", "--tg", "64", "--bench-threads", str(a.threads),
                       "--reps", "3", "--probe-mib", "256"]).stdout
            m = re.search(r"^\s*\d+\s+tg64\s+([0-9.]+)", out, re.M)
            row["decode_tps"] = float(m.group(1))
        results[name] = row
        cache_path.write_text(json.dumps(results, indent=2))

    write_markdown(results, a, Path(a.out))
    write_plot(results, Path(a.out).with_suffix(".png"))


def write_markdown(results, a, out):
    ref = results.get("fp32", {}).get("ppl")
    lines = [
        "# Quality of the quantizers on SmolLM2-135M-Instruct",
        "",
        f"Regenerated by `scripts/quality_table.py` on {time.strftime('%Y-%m-%d')}: perplexity on the first "
        f"{a.chunks} chunks of 512 tokens of `shared/data/text/sotu-eval.txt` (llama.cpp's protocol, the second half of "
        "each chunk scored), KL divergence and top-1 agreement against the fp32 run on the same tokens, bits per "
        "weight of the block linear layers (scales and offsets included; the output head is 8-bit uniform in every "
        f"quantized row and not counted), file size, and decode tokens/s on {a.threads} threads (`lutq bench`, tg64, "
        "median of 3; this 2-core machine is shared, so speeds are indicative).",
        "",
        "g = 128 is requested everywhere; SmolLM2's 576-wide inputs are not a multiple of 128, so the layers whose "
        "k is 576 (attn_q/k/v, ffn_gate/up) use g = 64 and only attn_output and ffn_down use g = 128 — the bpw column "
        "shows the resulting storage.",
        "",
        "| method | bits | bpw | file MiB | PPL | ΔPPL | KL | top-1 | decode tok/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = [c[0] for c in configs()] + sorted(set(results) - {c[0] for c in configs()})
    for name in order:
        r = results.get(name)
        if r is None:
            continue
        delta = f"{100 * (r['ppl'] / ref - 1):+.1f} %" if ref and name != "fp32" else ""
        speed = f"{r['decode_tps']:.1f}" if "decode_tps" in r else ""
        bits = "32" if name == "fp32" else str(r["bits"])
        lines.append(f"| {r['method']} | {bits} | {r['bpw']:.2f} | {r['file_mib']} | {r['ppl']:.2f} ± {r['ppl_err']:.2f} | "
                     f"{delta} | {r['kl']:.4f} | {r['top1']:.1f} % | {speed} |")
    lines += ["", "![perplexity against bits per weight](quality.png)", ""]
    out.write_text("\n".join(lines))
    print(f"wrote {out}", file=sys.stderr)


def write_plot(results, png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (apt-get install python3-matplotlib): no plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    methods = {}
    for r in results.values():
        if r["name"] != "fp32":
            methods.setdefault(r["method"], []).append((r["bpw"], r["ppl"]))
    for label, pts in sorted(methods.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    if "fp32" in results:
        ax.axhline(results["fp32"]["ppl"], color="black", linestyle="--", label="fp32 reference")
    ax.set_xlabel("bits per weight (block linear layers)")
    ax.set_ylabel("perplexity (sotu-eval)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title("SmolLM2-135M-Instruct: perplexity against bits per weight")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}", file=sys.stderr)


if __name__ == "__main__":
    main()

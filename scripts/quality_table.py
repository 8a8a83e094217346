#!/usr/bin/env python3
"""Regenerates the table in docs/quality.md (between its markers) and docs/quality.png: perplexity, KL divergence to the fp32
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
    """(name, method label, bits, quantize arguments or None, load-time arguments)."""
    rows = [("fp32", "fp32 (reference)", 32, None, [])]
    for q in (4, 3, 2):
        g = ["-q", str(q), "-g", "128"]
        rows.append((f"rtn-q{q}", "RTN uniform", q, ["--quant-method", "rtn"] + g, []))
        rows.append((f"greedy-q{q}", "BCQ greedy", q, ["--quant-method", "greedy"] + g, []))
        rows.append((f"alt-q{q}", "BCQ alternating", q, ["--quant-method", "alternating"] + g, []))
        rows.append((f"gptq-q{q}", "GPTQ uniform", q, ["--quant-method", "gptq"] + g, []))
        rows.append((f"gptqbcq-q{q}", "GPTQ BCQ", q, ["--quant-method", "gptq-bcq"] + g, []))
        rows.append((f"gptqbcq-ada-q{q}", "GPTQ BCQ AdaDim", q, ["--quant-method", "gptq-bcq", "--orientation", "auto"] + g, []))
    # Automatic mixed precision (2/3/4 bits per layer) at the uniform 3-bit alternating size.
    rows.append(("mixed-alt-3.66", "BCQ alternating, mixed 2-4 bits", 3,
                 ["--quant-method", "alternating", "-q", "3", "-g", "128", "--target-bpw", "3.66"], []))
    rows.append(("mixed-gptqbcq-3.66", "GPTQ BCQ, mixed 2-4 bits", 3,
                 ["--quant-method", "gptq-bcq", "-q", "3", "-g", "128", "--target-bpw", "3.66"], []))
    # LLM.int8() and plain int8 exist at load time only (not in lutq files).
    rows.append(("int8", "int8 (per-row absmax)", 8, None, ["--override", "blk.*=int8=plain"]))
    rows.append(("llm-int8", "LLM.int8() (threshold 6)", 8, None, ["--override", "blk.*=int8"]))
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
    ap.add_argument("--rows", default="", help="comma-separated row names to measure (default: all)")
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

    for name, label, bits, qargs, load_args in configs():
        if name in results and name not in only and (name != "fp32" or base_logits.exists()):
            continue
        if a.rows and name not in a.rows.split(",") and name != "fp32":
            continue
        row = {"name": name, "method": label, "bits": bits}
        target = model
        if qargs is not None:
            target = str(work / f"{name}.lutq")
            t0 = time.time()
            calib = (["--calib", str(SHARED / "sotu-calib.txt")]
                     if any(x.startswith("gptq") or x in ("auto", "--target-bpw") for x in qargs) else [])
            out = run([lutq, "quantize", model, target, "-t", str(a.threads)] + qargs + calib).stdout
            row["quantize_s"] = round(time.time() - t0, 1)
            m = re.search(r"block linear layers: ([0-9.]+) bits per weight", out)
            row["bpw"] = float(m.group(1))
            row["file_mib"] = round(os.path.getsize(target) / 2**20, 1)
        else:
            row["bpw"] = 32.0 if name == "fp32" else 8.0 + 32.0 / 576  # int8 codes + one fp32 scale per row
            row["file_mib"] = round(os.path.getsize(model) / 2**20, 1)
        ppl_cmd = [lutq, "perplexity", target, "-f", a.text, "--chunks", str(a.chunks), "-t", str(a.threads)] + load_args
        ppl_cmd += ["--save-logits", str(base_logits)] if name == "fp32" else ["--kl-base", str(base_logits)]
        out = run(ppl_cmd).stdout
        m = re.search(r"^PPL = ([0-9.]+) ± ([0-9.]+)", out, re.M)
        row["ppl"], row["ppl_err"] = float(m.group(1)), float(m.group(2))
        m = re.search(r"mean KL\(base \|\| this\) = ([0-9.]+).*top-1 agreement = ([0-9.]+)%", out)
        row["kl"], row["top1"] = (float(m.group(1)), float(m.group(2))) if m else (0.0, 100.0)
        if not a.no_speed:
            out = run([lutq, "bench", target, "--pp", "1", "--tg", "64", "--bench-threads", str(a.threads),
                       "--reps", "3", "--probe-mib", "256"] + load_args).stdout
            m = re.search(r"^\s*\d+\s+tg64\s+([0-9.]+)", out, re.M)
            row["decode_tps"] = float(m.group(1))
        results[name] = row
        cache_path.write_text(json.dumps(results, indent=2))

    write_markdown(results, a, Path(a.out))
    write_plot(results, Path(a.out).with_suffix(".png"))


def write_markdown(results, a, out):
    ref = results.get("fp32", {}).get("ppl")
    lines = [
        "## Measured: SmolLM2-135M-Instruct",
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
        "GPTQ rows calibrate on 8192 tokens of `shared/data/text/sotu-calib.txt` (never the evaluation text). "
        "int8 rows quantize at load (`--override 'blk.*=int8'`); their file column is the source GGUF.",
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
        file_mib = "(source)" if name in ("fp32", "int8", "llm-int8") else r["file_mib"]
        lines.append(f"| {r['method']} | {bits} | {r['bpw']:.2f} | {file_mib} | {r['ppl']:.2f} ± {r['ppl_err']:.2f} | "
                     f"{delta} | {r['kl']:.4f} | {r['top1']:.1f} % | {speed} |")
    lines += ["", "![perplexity against bits per weight](quality.png)", ""]
    # Only the part between the markers is ours; the method descriptions around it stay.
    start, end = "<!-- quality-table:start -->", "<!-- quality-table:end -->"
    doc = out.read_text() if out.exists() else f"# Quality\n\n{start}\n{end}\n"
    if start not in doc or end not in doc:
        doc += f"\n{start}\n{end}\n"
    head, rest = doc.split(start, 1)
    tail = rest.split(end, 1)[1]
    out.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + tail)
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

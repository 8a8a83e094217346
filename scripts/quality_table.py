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

# The grid of the issue: {RTN uniform, BCQ alternating, GPTQ uniform, GPTQ BCQ} x {per-OC, per-IC,
# AdaDim} x {4, 3, 2} bits x g in {128, 64}, plus BCQ greedy per-OC, automatic mixed precision and
# the int8 rows. Row names of the g = 128 per-OC rows predate the grid (kept so cached results
# stay valid).
METHODS = [("rtn", "RTN uniform", "rtn"), ("alt", "BCQ alternating", "alternating"),
           ("gptq", "GPTQ uniform", "gptq"), ("gptqbcq", "GPTQ BCQ", "gptq-bcq")]
ORIENTATIONS = [("oc", "per-OC"), ("ic", "per-IC"), ("ada", "AdaDim")]
ORIENT_ARG = {"oc": "oc", "ic": "ic", "ada": "auto"}


def row_name(key, orient, q, g):
    name = f"{key}-q{q}" if orient == "oc" else f"{key}-{orient}-q{q}"
    return name if g == 128 else f"{name}-g{g}"


def configs():
    """Dicts: name, method label, orientation label, g, bits, quantize args (None: none), load args."""
    rows = [dict(name="fp32", method="fp32 (reference)", orient="", g="", bits=32, qargs=None, load=[])]
    for q in (4, 3, 2):
        for g in (128, 64):
            for key, label, method in METHODS:
                for orient, olabel in ORIENTATIONS:
                    qargs = ["--quant-method", method, "-q", str(q), "-g", str(g), "--orientation", ORIENT_ARG[orient]]
                    rows.append(dict(name=row_name(key, orient, q, g), method=label, orient=olabel, g=g, bits=q,
                                     qargs=qargs, load=[]))
            if g == 128:
                rows.append(dict(name=f"greedy-q{q}", method="BCQ greedy", orient="per-OC", g=g, bits=q,
                                 qargs=["--quant-method", "greedy", "-q", str(q), "-g", "128"], load=[]))
    # Automatic mixed precision (2/3/4 bits per layer, KL sensitivity): per-OC at the uniform 3-bit
    # size, and AdaDim g = 64 with 0.05 bpw more than its uniform 3 bits.
    for orient, g, target in (("oc", 128, "3.66"), ("ada", 64, "3.80")):
        name = "mixed-gptqbcq-kl-3.66" if orient == "oc" else f"mixed-gptqbcq-{orient}-g{g}-kl-{target}"
        rows.append(dict(name=name, method="GPTQ BCQ, mixed 2-4 bits (KL)", orient=dict(ORIENTATIONS)[orient], g=g,
                         bits=3, load=[], qargs=["--quant-method", "gptq-bcq", "-q", "3", "-g", str(g), "--orientation",
                                                 ORIENT_ARG[orient], "--target-bpw", target, "--sensitivity", "kl"]))
    # Plain int8 and LLM.int8() (int8 codes + an fp16 copy for the outlier columns), as lutq files.
    for name, label, item in (("int8", "int8 (per-row absmax)", "int8=plain"),
                              ("llm-int8", "LLM.int8() (threshold 6)", "int8"),
                              ("llm-int8-t4", "LLM.int8() (threshold 4)", "int8=4")):
        rows.append(dict(name=name, method=label, orient="per-OC", g="row", bits=8, load=[],
                         qargs=["--override", f"blk.*={item}", "--override", "output=dense"]))
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

    # Measured g = 128 first (the grid is long; a partial run still covers every bit width).
    for c in sorted(configs(), key=lambda c: c["g"] == 64):
        name, label, bits, qargs, load_args = c["name"], c["method"], c["bits"], c["qargs"], c["load"]
        if name in results and name not in only and (name != "fp32" or base_logits.exists()):
            continue
        if a.rows and name not in a.rows.split(",") and name != "fp32":
            continue
        row = {"name": name, "method": label, "bits": bits, "orient": c["orient"], "g": c["g"]}
        target = model
        if qargs is not None:
            target = str(work / f"{name}.lutq")
            t0 = time.time()
            calib = (["--calib", str(SHARED / "sotu-calib.txt"), "--calib-cache", str(work / "sotu-calib.stats")]
                     if any(x.startswith("gptq") or x in ("auto", "--target-bpw") for x in qargs) else [])
            done = run([lutq, "quantize", model, target, "-t", str(a.threads)] + qargs + calib)
            out = done.stdout
            row["quantize_s"] = round(time.time() - t0, 1)
            row["calib_cached"] = "calibration statistics from" in done.stderr
            m = re.search(r"block linear layers: ([0-9.]+) bits per weight", out)
            row["bpw"] = float(m.group(1))
            row["file_mib"] = round(os.path.getsize(target) / 2**20, 1)
        else:
            row["bpw"] = 32.0
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
        if qargs is not None:
            os.remove(target)  # 100+ MB each; the row keeps its size

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
        "g is the group size requested: with g = 128, a 576-wide extent (k of attn_q/k/v and ffn_gate/up per-OC; "
        "n of attn_q/attn_output/ffn_down per-IC) is not a multiple of 128 and those layers use g = 64, so the bpw "
        "column shows the storage actually used. Orientation: per-OC groups run along a row's inputs, per-IC groups "
        "along a column's outputs, AdaDim picks per layer by calibrated error.",
        "",
        "A blank decode cell: that timing was disturbed by another job on the machine and dropped (`--only NAME` "
        "measures the row again).",
        "",
        "Quantize s: wall time of `lutq quantize` on the shared 2-core machine; * marks a run that read its "
        "calibration statistics from `--calib-cache` (collecting them costs about 45 s more).",
        "",
        "GPTQ and AdaDim rows calibrate on 8192 tokens of `shared/data/text/sotu-calib.txt` (never the evaluation text). "
        "int8 rows are lutq files made with `--override 'blk.*=int8'` (`=plain`, `=4`) and a dense fp32 head, as in the "
        "paper (the other quantized rows have the 8-bit head); LLM.int8()'s bpw counts its fp16 copy of the weights "
        "(docs/quality.md, LLM.int8()).",
        "",
        "| method | orientation | g | bits | bpw | file MiB | PPL | ΔPPL | KL | top-1 | decode tok/s | quantize s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    known = {c["name"]: c for c in configs()}
    order = list(known) + sorted(set(results) - set(known))
    for name in order:
        r = results.get(name)
        if r is None:
            continue
        c = known.get(name, {})
        d = 100 * (r['ppl'] / ref - 1) if ref else 0.0
        delta = (f"{d:+.2f} %" if abs(d) < 1 else f"{d:+.1f} %") if ref and name != "fp32" else ""
        speed = f"{r['decode_tps']:.1f}" if "decode_tps" in r else ""
        bits = "32" if name == "fp32" else str(r["bits"])
        file_mib = "(source)" if name == "fp32" else r["file_mib"]
        lines.append(f"| {r['method']} | {c.get('orient', '')} | {c.get('g', '')} | {bits} | {r['bpw']:.2f} | {file_mib} | "
                     f"{r['ppl']:.2f} ± {r['ppl_err']:.2f} | {delta} | {r['kl']:.4f} | {r['top1']:.1f} % | {speed} | "
                     f"{quantize_time(r)} |")
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


def quantize_time(r):
    if "quantize_s" not in r:
        return ""
    return f"{r['quantize_s']:.0f}" + ("*" if r.get("calib_cached") else "")


def write_plot(results, png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (apt-get install python3-matplotlib): no plot", file=sys.stderr)
        return
    known = {c["name"]: c for c in configs()}
    colors = {label: f"C{i}" for i, (_, label, _) in enumerate(METHODS)}
    styles = {"per-OC": "-", "per-IC": "--", "AdaDim": ":"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, g in zip(axes, (128, 64)):
        lines = {}
        for name, r in results.items():
            c = known.get(name)
            if c is None or c["g"] != g or c["method"] not in colors:
                continue
            lines.setdefault((c["method"], c["orient"]), []).append((r["bpw"], r["ppl"]))
        for (method, orient), pts in sorted(lines.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=colors[method],
                    linestyle=styles[orient], label=f"{method}, {orient}")
        if "fp32" in results:
            ax.axhline(results["fp32"]["ppl"], color="black", linestyle="--", linewidth=0.8, label="fp32 reference")
        ax.set_xlabel("bits per weight (block linear layers)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(f"g = {g} requested (int8 rows: see the table)")
    axes[0].set_ylabel("perplexity (sotu-eval)")
    axes[1].legend(fontsize=7, loc="upper right")
    fig.suptitle("SmolLM2-135M-Instruct: perplexity against bits per weight")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}", file=sys.stderr)


if __name__ == "__main__":
    main()

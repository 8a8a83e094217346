#!/usr/bin/env python3
"""lutq and llama.cpp side by side on one model (default: the 1.5B benchmark model), in one run.

Quality (`quality`): perplexity on sotu-eval (--chunks x 512 tokens), KL divergence to each
engine's own full-precision run and top-1 agreement, bits per weight of the block linear layers:
  - lutq: the dense fp32 reference (log-probs saved), then each row of LUTQ_ROWS quantized by
    `lutq quantize` (timed, peak RSS) and measured by `lutq perplexity --kl-base`;
  - llama.cpp (scripts/build-llamacpp.sh, llama-cpp-python's source): the same weights written as
    F32, an importance matrix from the same calibration text and token count lutq calibrates on,
    each type of LLAMA_TYPES made from the F32 file with that matrix, measured by
    llama-perplexity --kl-divergence against the F32 run.
Speed (`speed`): `lutq bench` (prefill pp128, decode tg64, 1 and 2 threads) against llama-bench
on files of comparable size, with bytes per token and the share of the probed bandwidth.

Results go to OUT/results.json (cached: a rerun measures only missing rows; --fresh discards)
and a markdown table on stdout. Every file written lives in OUT (default build-bench/side-by-side,
git-ignored). Usage:

    scripts/side_by_side.py quality|lutq|llama|speed|table|plot [--model GGUF] [--chunks 20] [--only NAME,...]

`collect` rebuilds results.json's quality rows from the logs in OUT; `plot` writes docs/qwen-1.5b.png (PPL and decode tokens/s against bits per weight).
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
TEXT = ROOT.parent / "shared" / "data" / "text"
LUTQ = Path(os.environ.get("LUTQ_BIN", ROOT / "build" / "lutq"))  # LUTQ_BIN: a copy kept apart from rebuilds
CALIB_TOKENS = 8192  # lutq quantize's default --calib-tokens, in chunks of 512

# name, lutq quantize arguments (calibrated rows use the default calibration text).
LUTQ_ROWS = [
    ("lutq-rtn-q4-g128", ["-q", "4", "-g", "128", "--quant-method", "rtn"]),
    ("lutq-gptqbcq-q4-g128", ["-q", "4", "-g", "128", "--quant-method", "gptq-bcq"]),
    ("lutq-rtn-q3-g128", ["-q", "3", "-g", "128", "--quant-method", "rtn"]),
    ("lutq-gptqbcq-q3-g128", ["-q", "3", "-g", "128", "--quant-method", "gptq-bcq"]),
    ("lutq-gptqbcq-ada-q3-g64", ["-q", "3", "-g", "64", "--quant-method", "gptq-bcq", "--orientation", "auto"]),
    ("lutq-gptqbcq-q2-g64", ["-q", "2", "-g", "64", "--quant-method", "gptq-bcq"]),
    ("lutq-gptqbcq-ada-q2-g64", ["-q", "2", "-g", "64", "--quant-method", "gptq-bcq", "--orientation", "auto"]),
    # Compressed scales (--scale-bits): finer groups at the same or a few more bits.
    ("lutq-gptqbcq-q4-g64-s8", ["-q", "4", "-g", "64", "--quant-method", "gptq-bcq", "--scale-bits", "8"]),
    ("lutq-gptqbcq-q4-g32-s6", ["-q", "4", "-g", "32", "--quant-method", "gptq-bcq", "--scale-bits", "6"]),
    ("lutq-gptqbcq-q2-g32-s6", ["-q", "2", "-g", "32", "--quant-method", "gptq-bcq", "--scale-bits", "6"]),
    # Uniform scales stored once per group; RTN keeps the Q4_K source's grid at g 32 (docs/quality.md).
    ("lutq-rtn-q4-g32-s8", ["-q", "4", "-g", "32", "--quant-method", "rtn", "--scale-bits", "8"]),
]
# Speed depends on the layout (q, g, offset, orientation), not on the method that chose the codes.
SPEED_LUTQ = ["lutq-rtn-q4-g128", "lutq-gptqbcq-q4-g128", "lutq-rtn-q3-g128", "lutq-gptqbcq-q3-g128",
              "lutq-gptqbcq-q2-g64"]
SPEED_LLAMA = ["llama-Q4_K_M", "llama-Q3_K_M", "llama-Q2_K"]
LLAMA_TYPES = ["Q4_K_M", "IQ4_NL", "IQ4_XS", "Q4_0", "Q3_K_M", "Q2_K", "IQ3_XXS", "IQ2_XS"]
# Block linear layers: the weights whose bits per weight the tables compare.
BLOCK_RE = re.compile(r"^blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$")


def log(msg):
    print(f"side-by-side: {msg}", file=sys.stderr, flush=True)


def run(cmd, log_path, env=None):
    """Runs cmd, its stdout+stderr teed to log_path; returns (output, seconds, peak RSS in GB)."""
    t0 = time.time()
    full = ["/usr/bin/time", "-f", "MAXRSS_KB %M"] + [str(c) for c in cmd]
    log(" ".join(str(c) for c in cmd))
    with open(log_path, "w") as f:
        p = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        f.write(p.stdout)
    if p.returncode != 0:
        sys.exit(f"side-by-side: failed ({p.returncode}), see {log_path}:\n" + p.stdout[-2000:])
    m = re.search(r"MAXRSS_KB (\d+)", p.stdout)
    return p.stdout, time.time() - t0, (int(m.group(1)) / 1e6 if m else None)


def llama_bin():
    """llama.cpp's tool folder, built first when missing (scripts/build-llamacpp.sh is idempotent)."""
    out = subprocess.run(["bash", ROOT / "scripts" / "build-llamacpp.sh"], capture_output=True, text=True, check=True)
    bin_dir = Path(out.stdout.strip())
    return bin_dir if bin_dir.is_absolute() else ROOT / bin_dir


def lutq_block_bpw(path):
    """Bits per weight of the block linear layers of a lutq file, from `lutq inspect`."""
    out = subprocess.run([LUTQ, "inspect", path], capture_output=True, text=True, check=True).stdout
    cfg = re.search(r"hidden (\d+), ffn (\d+), heads (\d+)/(\d+) kv, head_dim (\d+)", out)
    layers = int(re.search(r"(\d+) layers", out).group(1))
    d, f, h, hkv, hd = (int(x) for x in cfg.groups())
    elements = layers * (d * h * hd * 2 + 2 * d * hkv * hd + 3 * d * f)
    mib = sum(float(m.group(2)) for m in re.finditer(r"^\s+(attn_[qkvo]\w*|attn_output|ffn_\w+)\.weight: .*?([\d.]+) MiB$",
                                                     out, re.M))
    return mib * 1024 * 1024 * 8 / elements


def llama_block_bpw(quantize_log):
    """Bits per weight of the block linear layers, from llama-quantize's per-tensor lines."""
    elements = 0
    mib = 0.0
    for m in re.finditer(r"\]\s+(\S+)\s+- \[\s*([\d,\s]+)\], type =\s+\w+, (?:converting to \w+ \.\. size =\s+[\d.]+ MiB ->\s+([\d.]+) MiB|size =\s+([\d.]+) MiB)",
                         quantize_log):
        if not BLOCK_RE.match(m.group(1)):
            continue
        n = 1
        for x in m.group(2).split(","):
            n *= int(x.strip())
        elements += n
        mib += float(m.group(3) or m.group(4))
    return mib * 1024 * 1024 * 8 / elements if elements else None


def lutq_ppl(out):
    ppl = re.search(r"^PPL = ([\d.]+) ± ([\d.]+)", out, re.M)
    kl = re.search(r"mean KL\(base \|\| this\) = ([\d.]+).*top-1 agreement = ([\d.]+)%", out)
    row = dict(ppl=float(ppl.group(1)), ppl_err=float(ppl.group(2)))
    if kl:
        row.update(kl=float(kl.group(1)), top1=float(kl.group(2)))
    return row


def llama_ppl(out):
    row = {}
    m = re.search(r"Final estimate: PPL = ([\d.]+) \+/- ([\d.]+)", out)
    if m:
        row.update(ppl=float(m.group(1)), ppl_err=float(m.group(2)))
    m = re.search(r"Mean PPL\(Q\)\s*:\s*([\d.]+)\s*±\s*([\d.]+)", out)
    if m:
        row.update(ppl=float(m.group(1)), ppl_err=float(m.group(2)))
    m = re.search(r"Mean\s+KLD:\s+([-\d.]+)", out)
    if m:
        row["kl"] = float(m.group(1))
    m = re.search(r"Same top p:\s+([\d.]+)", out)
    if m:
        row["top1"] = float(m.group(1))
    return row


class Bench:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.results_path = self.out / "results.json"
        self.results = {} if args.fresh or not self.results_path.exists() else json.loads(self.results_path.read_text())
        self.eval = TEXT / "sotu-eval.txt"
        self.calib = TEXT / "sotu-calib.txt"
        self.threads = str(args.threads)

    def save(self, name, row):
        """Adds a row; rows another run wrote meanwhile are kept (several steps may run at once)."""
        self.results[name] = row
        on_disk = {} if self.args.fresh or not self.results_path.exists() else json.loads(self.results_path.read_text())
        on_disk.update(self.results)
        self.results = on_disk
        self.results_path.write_text(json.dumps(self.results, indent=1, sort_keys=True))

    def wanted(self, name):
        return (not self.args.only or name in self.args.only.split(",")) and name not in self.results

    def lutq_quality(self):
        ref_lp = self.out / "lutq-ref.lpf"
        ppl_args = ["-f", self.eval, "--chunks", str(self.args.chunks), "--ctx", "512", "-t", self.threads]
        if self.args.no_kl:
            ref_lp = None  # rows measured without KL; llama.cpp's F32 PPL stands in as the reference
        elif self.wanted("lutq-fp32") or not ref_lp.exists():
            out, sec, _ = run([LUTQ, "perplexity", self.args.model] + ppl_args + ["--save-logits", ref_lp],
                              self.out / "lutq-fp32.ppl.log")
            self.save("lutq-fp32", dict(engine="lutq", label="dense fp32 (reference)", bpw=32.0, eval_s=sec,
                                        **lutq_ppl(out)))
        for name, qargs in LUTQ_ROWS:
            if not self.wanted(name):
                continue
            path = self.out / f"{name}.lutq"
            qsec = rss = None
            if not path.exists():  # a file already there (e.g. quantized by hand) is measured as it is
                _, qsec, rss = run([LUTQ, "quantize", self.args.model, path, "-t", self.threads] + qargs,
                                   self.out / f"{name}.quantize.log")
            kl = ["--kl-base", ref_lp] if ref_lp else []
            out, sec, _ = run([LUTQ, "perplexity", path] + ppl_args + kl, self.out / f"{name}.ppl.log")
            self.save(name, dict(engine="lutq", label=" ".join(qargs), bpw=lutq_block_bpw(path),
                                 file_mib=path.stat().st_size / 2**20, quantize_s=qsec, quantize_rss_gb=rss,
                                 eval_s=sec, **lutq_ppl(out)))

    def llama_quality(self):
        bin_dir = llama_bin()
        f32 = self.out / "llama-f32.gguf"
        if not f32.exists():
            run([bin_dir / "llama-quantize", "--allow-requantize", self.args.model, f32, "F32", self.threads],
                self.out / "llama-f32.quantize.log")
        base = self.out / "llama-ref.kld"
        ppl_args = ["-f", self.eval, "--chunks", str(self.args.chunks), "-c", "512", "-t", self.threads, "-b", "512"]
        if self.wanted("llama-f32") or not base.exists():
            out, sec, _ = run([bin_dir / "llama-perplexity", "-m", f32] + ppl_args + ["--kl-divergence-base", base],
                              self.out / "llama-f32.ppl.log")
            self.save("llama-f32", dict(engine="llama.cpp", label="F32 (reference)", bpw=32.0, eval_s=sec, **llama_ppl(out)))
        imatrix = self.out / "imatrix.gguf"
        if not imatrix.exists():
            # The source file holds the same weights as the F32 copy and runs far faster.
            run([bin_dir / "llama-imatrix", "-m", self.args.model, "-f", self.calib, "-o", imatrix, "-c", "512",
                 "--chunks", str(CALIB_TOKENS // 512), "-t", self.threads], self.out / "imatrix.log")
        for qtype in LLAMA_TYPES:
            name = f"llama-{qtype}"
            if not self.wanted(name):
                continue
            path = self.out / f"{name}.gguf"
            qout, qsec, rss = run([bin_dir / "llama-quantize", "--imatrix", imatrix, f32, path, qtype, self.threads],
                                  self.out / f"{name}.quantize.log")
            out, sec, _ = run([bin_dir / "llama-perplexity", "-m", path] + ppl_args +
                              ["--kl-divergence-base", base, "--kl-divergence"], self.out / f"{name}.ppl.log")
            self.save(name, dict(engine="llama.cpp", label=f"{qtype} + imatrix", bpw=llama_block_bpw(qout),
                                 file_mib=path.stat().st_size / 2**20, quantize_s=qsec, eval_s=sec, **llama_ppl(out)))

    def speed(self):
        """lutq bench and llama-bench, pp128 and tg64 on 1 and 2 threads, medians of 3, one after the other."""
        bin_dir = llama_bin()
        rows = [(n, self.out / f"{n}.lutq") for n in SPEED_LUTQ] + [(n, self.out / f"{n}.gguf") for n in SPEED_LLAMA]
        speed = self.results.setdefault("_speed", {})
        for name, path in rows:
            if (self.args.only and name not in self.args.only.split(",")) or name in speed:
                continue
            if name.startswith("llama") and not path.exists():
                self.llama_speed_file(bin_dir, name, path)
            if not path.exists():
                continue
            if name.startswith("lutq"):
                js = self.out / f"{name}.bench.json"
                run([LUTQ, "bench", path, "--pp", "128", "--tg", "64", "--bench-threads", "1,2", "--reps", "3",
                     "--json", js], self.out / f"{name}.bench.log")
                j = json.loads(js.read_text())
                res = {f"{r['test']}@{r['threads']}": r["tokens_per_s"] for r in j["results"]}
                res.update({f"floor@{r['threads']}": r["floor_fraction"] for r in j["results"] if r["test"].startswith("tg")})
                res["bytes_per_token"] = j["weight_bytes_per_token"]
                res["bandwidth_gbps"] = {str(b["threads"]): b["median"] for b in j["bandwidth_gbps"]}
            else:
                out, _, _ = run([bin_dir / "llama-bench", "-m", path, "-p", "128", "-n", "64", "-t", "1,2", "-r", "3",
                                 "-o", "json"], self.out / f"{name}.bench.log")
                res = {}
                for r in json.loads(out[out.index("["):out.rindex("]") + 1]):
                    test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
                    res[f"{test}@{r['n_threads']}"] = r["avg_ts"]
                res["model_bytes"] = path.stat().st_size
            speed[name] = res
            self.save("_speed", speed)

    def llama_speed_file(self, bin_dir, name, path):
        """A llama.cpp file for the speed rows when the quality step has not made it: the same type,
        quantized from the source file (its weights) with the importance matrix when there is one.
        Speed depends on the type's layout only, so these files time exactly like the quality ones."""
        imatrix = self.out / "imatrix.gguf"
        if not imatrix.exists():
            run([bin_dir / "llama-imatrix", "-m", self.args.model, "-f", self.calib, "-o", imatrix, "-c", "512",
                 "--chunks", str(CALIB_TOKENS // 512), "-t", self.threads], self.out / "imatrix.log")
        run([bin_dir / "llama-quantize", "--allow-requantize", "--imatrix", imatrix, self.args.model, path,
             name.removeprefix("llama-"), self.threads], self.out / f"{name}.speed-quantize.log")

    def speed_table(self):
        speed = self.results.get("_speed", {})
        if not speed:
            return
        print()
        print("| engine / model | bpw (block layers) | prefill pp128 1T | pp128 2T | decode tg64 1T | tg64 2T | floor share tg 1T / 2T |")
        print("|---|---|---|---|---|---|---|")
        for name, r in speed.items():
            q = self.results.get(name, {})
            floor = (f"{100 * r['floor@1']:.0f} % / {100 * r['floor@2']:.0f} %" if "floor@1" in r else "")
            print(f"| {name} | {q.get('bpw', float('nan')):.2f} | {r.get('pp128@1', 0):.1f} | {r.get('pp128@2', 0):.1f} | "
                  f"{r.get('tg64@1', 0):.2f} | {r.get('tg64@2', 0):.2f} | {floor} |")

    def collect(self):
        """Rebuilds the quality rows from the logs in OUT (e.g. after an interrupted run)."""
        for name, qargs in LUTQ_ROWS:
            log_path, path = self.out / f"{name}.ppl.log", self.out / f"{name}.lutq"
            if name not in self.results and log_path.exists() and path.exists() and "PPL = " in log_path.read_text():
                self.save(name, dict(engine="lutq", label=" ".join(qargs), bpw=lutq_block_bpw(path),
                                     file_mib=path.stat().st_size / 2**20, **lutq_ppl(log_path.read_text())))
        for qtype in LLAMA_TYPES:
            name = f"llama-{qtype}"
            ppl_log, q_log = self.out / f"{name}.ppl.log", self.out / f"{name}.quantize.log"
            if name not in self.results and ppl_log.exists() and q_log.exists():
                row = llama_ppl(ppl_log.read_text())
                if "ppl" in row:
                    self.save(name, dict(engine="llama.cpp", label=f"{qtype} + imatrix", bpw=llama_block_bpw(q_log.read_text()),
                                         file_mib=(self.out / f"{name}.gguf").stat().st_size / 2**20, **row))

    def table(self):
        ref = {"lutq": self.results.get("lutq-fp32", {}).get("ppl"), "llama.cpp": self.results.get("llama-f32", {}).get("ppl")}
        if ref["lutq"] is None and ref["llama.cpp"] is not None:
            # Same weights and protocol: llama.cpp's F32 run stands in for lutq's own (marked "*").
            print("(*: lutq's own fp32 run is missing; increases are against llama.cpp's F32 PPL)")
            ref["lutq"] = ref["llama.cpp"]
        stand_in = "lutq-fp32" not in self.results
        print("| engine | model | bpw (block layers) | PPL | Δ PPL vs own reference | KL | top-1 |")
        print("|---|---|---|---|---|---|---|")
        for name, r in sorted(self.results.items(), key=lambda kv: (-kv[1].get("bpw", 0), kv[0])):
            if name.startswith("_") or "ppl" not in r:
                continue
            base = ref.get(r["engine"])
            delta = f"{100 * (r['ppl'] / base - 1):+.2f} %" if base and r["bpw"] < 32 else ""
            if delta and r["engine"] == "lutq" and stand_in:
                delta += " *"
            kl = f"{r['kl']:.4f}" if "kl" in r else ""
            top1 = f"{r['top1']:.1f} %" if "top1" in r else ""
            print(f"| {r['engine']} | {r['label']} | {r['bpw']:.3f} | {r['ppl']:.3f} ± {r['ppl_err']:.3f} | {delta} | {kl} | {top1} |")


def write_plot(results, png):
    """PPL and decode speed against bits per weight of the block layers, one marker per engine."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    speed = results.get("_speed", {})
    for engine, color in (("lutq", "C0"), ("llama.cpp", "C1")):
        rows = [(r["bpw"], r["ppl"], n) for n, r in results.items()
                if not n.startswith("_") and r.get("engine") == engine and "ppl" in r and r["bpw"] < 32]
        for bpw, ppl, n in sorted(rows):
            a.scatter(bpw, ppl, color=color)
            a.annotate(results[n]["label"].split(" + ")[0].replace("-q ", "q").replace("--quant-method ", ""),
                       (bpw, ppl), fontsize=6, xytext=(3, 3), textcoords="offset points")
        a.scatter([], [], color=color, label=engine)
        for threads, marker in (("1", "o"), ("2", "s")):
            pts = sorted((results[n]["bpw"], r[f"tg64@{threads}"]) for n, r in speed.items()
                         if n in results and results[n].get("engine") == engine and f"tg64@{threads}" in r)
            if pts:
                b.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color,
                       label=f"{engine}, {threads} thread{'s' if threads == '2' else ''}")
    ref = results.get("llama-f32", {}).get("ppl")
    if ref:
        a.axhline(ref, color="black", linestyle="--", linewidth=0.8, label="F32 reference")
    a.set_yscale("log")
    a.set_xlabel("bits per weight (block linear layers)")
    a.set_ylabel("perplexity, sotu-eval 20 x 512")
    a.legend(fontsize=7)
    a.grid(True, which="both", alpha=0.3)
    b.set_xlabel("bits per weight (block linear layers)")
    b.set_ylabel("decode tokens/s (tg64)")
    b.legend(fontsize=7)
    b.grid(True, alpha=0.3)
    fig.suptitle("Qwen2.5-Coder-1.5B-Instruct (Q4_K_M at the source): lutq and llama.cpp")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    log(f"wrote {png}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["quality", "lutq", "llama", "speed", "collect", "table", "plot"])
    ap.add_argument("--model", default=str(ROOT / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"))
    ap.add_argument("--out", default=str(ROOT / "build-bench" / "side-by-side"))
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--only", default="")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--no-kl", action="store_true", help="lutq rows without the fp32 reference run (no KL)")
    args = ap.parse_args()
    if not Path(args.model).exists():
        sys.exit(f"side-by-side: {args.model} is missing (scripts/fetch-qwen.sh fetches the 1.5B model)")
    b = Bench(args)
    if args.step in ("quality", "lutq"):
        b.lutq_quality()
    if args.step in ("quality", "llama"):
        b.llama_quality()
    if args.step == "speed":
        b.speed()
    if args.step == "collect":
        b.collect()
    b.table()
    b.speed_table()
    if args.step == "plot":
        write_plot(b.results, ROOT / "docs" / "qwen-1.5b.png")


if __name__ == "__main__":
    main()

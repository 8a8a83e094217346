#!/usr/bin/env python3
"""Writes the seed files of fuzz/corpus/lutq_file/: small lutq model files (BCQ and int8 entries)
and scale adapters, standard library only (the GGUF encoder of make_gguf_seeds.py).

    python3 fuzz/make_lutq_seeds.py [out_dir]     # default: fuzz/corpus/lutq_file next to this script
"""
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_gguf_seeds import ARR, GGML, I64, STR, U32, F32, gguf  # noqa: E402

GGML["i8"] = (24, 1, 1)


def f16s(rng, count):
    """fp16 values in 0.125..1.0 (0x3000..0x3bff)."""
    return b"".join(struct.pack("<H", rng.randrange(0x3000, 0x3c00)) for _ in range(count))


def bcq(rng, name, n, k, q, g, per_ic, offset):
    """The lutq.bcq key and the three tensors of one BCQ matrix."""
    kvs = [(f"lutq.bcq.{name}", ARR, (I64, [n, k, q, g, 1 if per_ic else 0, 1 if offset else 0]))]
    row_bytes = (k + 7) // 8
    bits = bytearray(rng.randrange(256) for _ in range(row_bytes * n * q))
    if k % 8:
        for r in range(n * q):
            bits[(r + 1) * row_bytes - 1] &= (1 << (k % 8)) - 1
    sets = (n * (k // g)) if not per_ic else (k * (n // g))
    adims = [q, k // g, n] if not per_ic else [q, k, n // g]
    odims = [k // g, n] if not per_ic else [k, n // g]
    tensors = [(f"{name}.bcq_bits", [row_bytes, n, q], "i8", bytes(bits)),
               (f"{name}.bcq_alpha", adims, "f16", f16s(rng, sets * q))]
    if offset:
        tensors.append((f"{name}.bcq_offset", odims, "f16", f16s(rng, sets)))
    return kvs, tensors


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "lutq_file")
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(7)
    seeds = {}
    kv1, t1 = bcq(rng, "blk.0.attn_q.weight", 8, 64, 2, 32, False, True)
    kv2, t2 = bcq(rng, "blk.0.ffn_up.weight", 64, 12, 3, 32, True, False)
    seeds["model_bcq.lutq"] = gguf([("lutq.format_version", U32, 1)] + kv1 + kv2, t1 + t2)
    i8 = bytes(rng.randrange(256) if rng.random() < 0.5 else 0 for _ in range(4 * 32))
    i8 = bytes(b if b != 0x80 else 0 for b in i8)
    kv_i8 = [("lutq.int8.output.weight", ARR, (I64, [4, 32])), ("lutq.int8.output.weight.threshold", F32, 6.0)]
    t_i8 = [("output.weight.int8_q", [32, 4], "i8", i8), ("output.weight.int8_scale", [4], "f32", struct.pack("<4f", 0.1, 0.2, 0.3, 0.4)),
            ("output.weight.int8_fp16", [32, 4], "f16", f16s(rng, 128))]
    seeds["model_int8.lutq"] = gguf([("lutq.format_version", U32, 1)] + kv_i8, t_i8)
    adapter_kvs = [("lutq.adapter.format_version", U32, 1), ("lutq.adapter.base", STR, "base.lutq"),
                   ("lutq.adapter.description", STR, "seed")]
    kv3, t3 = bcq(rng, "blk.0.attn_q.weight", 8, 64, 2, 32, False, True)
    t3 = [t for t in t3 if not t[0].endswith(".bcq_bits")]
    seeds["adapter.gguf"] = gguf(adapter_kvs + kv3 + [("lutq.adapter.blk.0.attn_q.weight.codes", STR, "0123456789abcdef")], t3)
    kv4, _ = bcq(rng, "blk.0.attn_k.weight", 8, 64, 2, 32, False, True)
    seeds["adapter_row.gguf"] = gguf(adapter_kvs + kv4 + [("lutq.adapter.blk.0.attn_k.weight.kind", STR, "row"),
                                                         ("lutq.adapter.blk.0.attn_k.weight.codes", STR, "fedcba9876543210")],
                                     [("blk.0.attn_k.weight.adapter_row_alpha", [2, 8], "f16", f16s(rng, 16))])
    for name, data in seeds.items():
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()

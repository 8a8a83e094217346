#!/usr/bin/env python3
"""Writes the seed files of fuzz/corpus/lutq_file/: small lutq model files (BCQ entries with fp16,
compressed and uniform scales, int8 and QMoE entries, MoE experts one matrix per expert), scale adapters and a tune checkpoint, standard library only (the GGUF encoder of make_gguf_seeds.py).

    python3 fuzz/make_lutq_seeds.py [out_dir]     # default: fuzz/corpus/lutq_file next to this script
"""
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_gguf_seeds import ARR, GGML, I64, STR, U32, F32, F64, gguf  # noqa: E402

GGML["i8"] = (24, 1, 1)
GGML["i16"] = (25, 1, 2)
GGML["i32"] = (26, 1, 4)


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


def pack_codes(codes, bits):
    """Codes of `bits` bits packed LSB-first (format/scale_codes.h)."""
    out = bytearray((len(codes) * bits + 7) // 8)
    for j, c in enumerate(codes):
        for t in range(bits):
            pos = j * bits + t
            out[pos // 8] |= ((c >> t) & 1) << (pos % 8)
    return bytes(out)


def bcq_coded(rng, name, n, k, q, g, per_ic, offset, bits):
    """A BCQ matrix with compressed scales: the key with .scale_bits, the bits, codes, super
    scales and (with an offset) the offset codes and ranges [zmin, zmax] (zmin <= zmax)."""
    kvs, tensors = bcq(rng, name, n, k, q, g, per_ic, offset)
    kvs.append((f"lutq.bcq.{name}.scale_bits", U32, bits))
    sets = (n * (k // g)) if not per_ic else (k * (n // g))
    lines = k if per_ic else n
    top = (1 << bits) - 1
    out = [t for t in tensors if t[0].endswith(".bcq_bits")]
    out.append((f"{name}.bcq_alpha_code", [len(pack_codes([0] * (sets * q), bits))], "i8",
                pack_codes([rng.randrange(top + 1) for _ in range(sets * q)], bits)))
    out.append((f"{name}.bcq_alpha_super", [q, lines], "f16", f16s(rng, lines * q)))
    if offset:
        out.append((f"{name}.bcq_offset_code", [len(pack_codes([0] * sets, bits))], "i8",
                    pack_codes([rng.randrange(top + 1) for _ in range(sets)], bits)))
        ranges = b"".join(struct.pack("<HH", 0x3000 + r, 0x3800 + r) for r in range(lines))
        out.append((f"{name}.bcq_offset_range", [2, lines], "f16", ranges))
    return kvs, out


def qmoe(rng, name, n, k, dict_name):
    """A QMoE matrix coded with the three single-symbol entries of dictionary `dict_name`
    (0, +1, -1: one codeword per symbol), and that dictionary."""
    dict_kvs = [(f"lutq.qmoe_dict.{dict_name}", ARR, (I64, [3]))]
    dict_tensors = [(f"qmoe_dict.{dict_name}.len", [3], "i8", bytes([1, 1, 1])),
                    (f"qmoe_dict.{dict_name}.pos", [3], "i32", struct.pack("<3I", 0, 1, 0)),
                    (f"qmoe_dict.{dict_name}.neg", [3], "i32", struct.pack("<3I", 0, 0, 1))]
    codes = [rng.randrange(3) for _ in range(n * k)]
    kvs = [(f"lutq.qmoe.{name}", ARR, (I64, [n, k, n * k])), (f"lutq.qmoe.{name}.dict", STR, dict_name)]
    tensors = [(f"{name}.qmoe_scale", [n], "f16", f16s(rng, n)),
               (f"{name}.qmoe_offsets", [n + 1], "i32", struct.pack(f"<{n + 1}I", *[r * k for r in range(n + 1)])),
               (f"{name}.qmoe_codes", [n * k], "i16", struct.pack(f"<{n * k}H", *codes))]
    return dict_kvs + kvs, dict_tensors + tensors


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
    # Last, so the seeds above keep their random streams. An MoE layer's experts: blk.0.ffn_up_exps.{0,1} as BCQ, blk.0.ffn_down_exps.0 as QMoE.
    kv_e0, t_e0 = bcq(rng, "blk.0.ffn_up_exps.0.weight", 8, 32, 2, 32, False, True)
    kv_e1, t_e1 = bcq(rng, "blk.0.ffn_up_exps.1.weight", 8, 32, 2, 32, False, True)
    kv_q, t_q = qmoe(rng, "blk.0.ffn_down_exps.0.weight", 4, 8, "experts")
    seeds["model_experts.lutq"] = gguf([("lutq.format_version", U32, 1)] + kv_e0 + kv_e1 + kv_q, t_e0 + t_e1 + t_q)
    # Compressed scales (format version 2): per-OC with offsets (5-bit codes), per-IC without (8-bit).
    kv_c0, t_c0 = bcq_coded(rng, "blk.0.attn_q.weight", 8, 64, 3, 32, False, True, 5)
    kv_c1, t_c1 = bcq_coded(rng, "blk.0.ffn_up.weight", 64, 12, 2, 32, True, False, 8)
    seeds["model_bcq_codes.lutq"] = gguf([("lutq.format_version", U32, 2)] + kv_c0 + kv_c1, t_c0 + t_c1)
    # A lutq tune checkpoint (train/tune_state.h): one trained tensor, its AdamW moments in f64.
    GGML["f64"] = (28, 1, 8)
    state_kvs = [("lutq.tune_state.format_version", U32, 1), ("lutq.tune_state.fingerprint", STR, "0123456789abcdef"),
                 ("lutq.tune_state.step", I64, 3), ("lutq.tune_state.next", I64, 6),
                 ("lutq.tune_state.order", ARR, (I64, [2, 0, 1])), ("lutq.tune_state.rng", STR, "5489 1 2 3"),
                 ("lutq.tune_state.held_out_before", F64, 2.5)]
    params = struct.pack("<8f", *[0.25 * (i + 1) for i in range(8)])
    seeds["tune_state.gguf"] = gguf(state_kvs, [("blk.0.attn_q.weight.alpha.params", [8], "f32", params),
                                                ("blk.0.attn_q.weight.alpha.m", [8], "f64", struct.pack("<8d", *[0.01] * 8)),
                                                ("blk.0.attn_q.weight.alpha.v", [8], "f64", struct.pack("<8d", *[1e-4] * 8))])
    # Uniform scales (format version 3): plane 0 only, fp16 per-OC with offsets and 6-bit codes per-IC.
    kv_u0, t_u0 = bcq(rng, "blk.0.attn_q.weight", 8, 64, 3, 32, False, True)
    t_u0 = [t if not t[0].endswith(".bcq_alpha") else (t[0], [1] + t[1][1:], "f16", f16s(rng, 8 * 2)) for t in t_u0]
    kv_u1, t_u1 = bcq_coded(rng, "blk.0.ffn_up.weight", 64, 12, 2, 32, True, False, 6)
    t_u1 = [t for t in t_u1 if not t[0].endswith((".bcq_alpha_code", ".bcq_alpha_super"))]
    t_u1 += [("blk.0.ffn_up.weight.bcq_alpha_code", [len(pack_codes([0] * 24, 6))], "i8",
              pack_codes([rng.randrange(64) for _ in range(24)], 6)),
             ("blk.0.ffn_up.weight.bcq_alpha_super", [1, 12], "f16", f16s(rng, 12))]
    kv_u = kv_u0 + kv_u1 + [("lutq.bcq.blk.0.attn_q.weight.uniform", U32, 1), ("lutq.bcq.blk.0.ffn_up.weight.uniform", U32, 1)]
    seeds["model_bcq_uniform.lutq"] = gguf([("lutq.format_version", U32, 3)] + kv_u, t_u0 + t_u1)
    for name, data in seeds.items():
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the tiny seed files of fuzz/corpus/gguf/ (each well under 4 KB), standard library only.

    python3 fuzz/make_gguf_seeds.py [out_dir]     # default: fuzz/corpus/gguf next to this script
"""
import os
import random
import struct
import sys

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
              U64: "<Q", I64: "<q", F64: "<d"}
# ggml type code: (block size, bytes per block)
GGML = {"f32": (0, 1, 4), "f16": (1, 1, 2), "q4_0": (2, 32, 18), "q4_1": (3, 32, 20), "q5_0": (6, 32, 22),
        "q5_1": (7, 32, 24), "q8_0": (8, 32, 34), "q2_K": (10, 256, 84), "q3_K": (11, 256, 110),
        "q4_K": (12, 256, 144), "q5_K": (13, 256, 176), "q6_K": (14, 256, 210), "q8_K": (15, 256, 292),
        "bf16": (30, 1, 2)}


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def value(t, v):
    """Encodes a value of type t; arrays are (elem_type, [values])."""
    if t == STR:
        return gstr(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(value(et, x) for x in items)
    return struct.pack(SCALAR_FMT[t], v)


def gguf(kvs, tensors=(), version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, dims, ggml type name, raw bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gstr(k) + struct.pack("<I", t) + value(t, v)
    offset = 0
    blobs = []
    for name, dims, tname, raw in tensors:
        code, bs, ts = GGML[tname]
        n = 1
        for d in dims:
            n *= d
        assert dims[0] % bs == 0 and len(raw) == n // bs * ts, name
        out += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", code, offset)
        blobs.append(raw)
        offset += (len(raw) + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    for raw in blobs:
        out += raw + b"\0" * (-len(raw) % alignment)
    return out


def blocks(rng, tname, n_elements):
    """Random quantized bytes with sane fp16 scales (0x3000..0x3bff: 0.125..1.0)."""
    _, bs, ts = GGML[tname]
    half = lambda: struct.pack("<H", rng.randrange(0x3000, 0x3c00))
    out = b""
    for _ in range(n_elements // bs):
        body = bytearray(rng.randbytes(ts))
        if tname in ("q4_0", "q5_0", "q8_0"):
            body[0:2] = half()
        elif tname in ("q4_1", "q5_1", "q4_K", "q5_K", "q2_K"):
            at = 80 if tname == "q2_K" else 0
            body[at:at + 2] = half()
            body[at + 2:at + 4] = half()
        elif tname == "q3_K":
            body[108:110] = half()
        elif tname == "q6_K":
            body[208:210] = half()
        elif tname == "q8_K":
            body[0:4] = struct.pack("<f", 0.01)
        elif tname in ("f16", "bf16"):
            body = bytearray(b"".join(struct.pack("<e", rng.uniform(-2, 2)) for _ in range(bs)))
            if tname == "bf16":
                body = bytearray(b"".join(struct.pack("<f", rng.uniform(-2, 2))[2:] for _ in range(bs)))
        elif tname == "f32":
            body = bytearray(struct.pack("<f", rng.uniform(-2, 2)))
        out += bytes(body)
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "gguf")
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(1234)
    seeds = {}
    seeds["metadata_all_types.gguf"] = gguf([
        ("general.architecture", STR, "llama"), ("u8", U8, 200), ("i8", I8, -5), ("u16", U16, 60000),
        ("i16", I16, -300), ("u32", U32, 4000000000), ("i32", I32, -7), ("f32", F32, 1.5), ("b", BOOL, True),
        ("u64", U64, 2**63 + 5), ("i64", I64, -2**40), ("f64", F64, 3.25), ("s", STR, "h\u00e9llo"),
        ("arr.i32", ARR, (I32, [1, -2, 3])), ("arr.f32", ARR, (F32, [0.5, -1.0])), ("arr.bool", ARR, (BOOL, [True, False])),
        ("arr.str", ARR, (STR, ["a", "", "bc"])), ("arr.u64", ARR, (U64, [1, 2**64 - 1])),
        ("arr.nested", ARR, (ARR, [(I16, [1, 2]), (STR, ["x"]), (ARR, [(U8, [7])])])),
    ])
    seeds["tensors_basic.gguf"] = gguf(
        [("general.architecture", STR, "llama"), ("general.alignment", U32, 32)],
        [(f"t.{t}", [32, 2], t, blocks(rng, t, 64)) for t in ("f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0")])
    seeds["tensors_kquants.gguf"] = gguf(
        [("general.architecture", STR, "llama")],
        [(f"blk.0.{t}", [256], t, blocks(rng, t, 256)) for t in ("q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_K")])
    seeds["v2_align64.gguf"] = gguf(
        [("general.alignment", U32, 64), ("general.name", STR, "v2")],
        [("a", [4, 3], "f32", blocks(rng, "f32", 12)), ("b", [32, 1, 2], "q8_0", blocks(rng, "q8_0", 64))],
        version=2, alignment=64)
    seeds["vocab_like.gguf"] = gguf([
        ("general.architecture", STR, "llama"), ("tokenizer.ggml.model", STR, "llama"),
        ("tokenizer.ggml.tokens", ARR, (STR, ["<unk>", "<s>", "</s>", "\u2581a", "b"])),
        ("tokenizer.ggml.scores", ARR, (F32, [0.0, 0.0, 0.0, -1.0, -2.0])),
        ("tokenizer.ggml.token_type", ARR, (I32, [2, 3, 3, 1, 1])),
        ("tokenizer.ggml.bos_token_id", U32, 1), ("tokenizer.ggml.add_bos_token", BOOL, True),
    ])
    seeds["empty.gguf"] = gguf([])
    for name, data in seeds.items():
        assert len(data) < 4096, (name, len(data))
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the tiny seed files of fuzz/corpus/safetensors/ (each well under 4 KB), standard library only.

    python3 fuzz/make_safetensors_seeds.py [out_dir]   # default: fuzz/corpus/safetensors next to this script
"""
import json
import os
import random
import struct
import sys

SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1, "F64": 8, "F8_E4M3": 1}


def image(tensors, metadata=None, pad=True):
    """tensors: [(name, dtype, shape, raw bytes)] laid out back to back."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blob = b""
    for name, dtype, shape, raw in tensors:
        n = 1
        for d in shape:
            n *= d
        assert len(raw) == n * SIZE[dtype], name
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob


def floats(rng, n, fmt):
    if fmt == "F32":
        return b"".join(struct.pack("<f", rng.uniform(-2, 2)) for _ in range(n))
    if fmt == "F16":
        return b"".join(struct.pack("<e", rng.uniform(-2, 2)) for _ in range(n))
    return b"".join(struct.pack("<f", rng.uniform(-2, 2))[2:] for _ in range(n))  # BF16: top half


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus",
                                                              "safetensors")
    os.makedirs(out, exist_ok=True)
    rng = random.Random(1)
    seeds = {
        "empty.safetensors": image([]),
        "metadata_only.safetensors": image([], {"format": "pt", "note": "seed"}),
        "floats.safetensors": image([("a", "F32", [2, 3], floats(rng, 6, "F32")),
                                     ("b", "F16", [4], floats(rng, 4, "F16")),
                                     ("c", "BF16", [2, 2], floats(rng, 4, "BF16"))], {"format": "pt"}),
        "mixed.safetensors": image([("ids", "I64", [3], rng.randbytes(24)), ("mask", "BOOL", [5], bytes(5)),
                                    ("scalar", "F32", [], floats(rng, 1, "F32")), ("empty", "F16", [0, 3], b""),
                                    ("f8", "F8_E4M3", [4], rng.randbytes(4))]),
        "llama_like.safetensors": image([("model.embed_tokens.weight", "BF16", [8, 4], floats(rng, 32, "BF16")),
                                         ("model.layers.0.self_attn.q_proj.weight", "BF16", [4, 4],
                                          floats(rng, 16, "BF16")),
                                         ("model.norm.weight", "F32", [4], floats(rng, 4, "F32"))]),
        "unpadded.safetensors": image([("x", "F32", [1], floats(rng, 1, "F32"))], pad=False),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds)} seeds to {out}")


if __name__ == "__main__":
    main()

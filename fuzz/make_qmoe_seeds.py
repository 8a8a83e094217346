#!/usr/bin/env python3
"""Writes seed inputs for fuzz/qmoe_code_fuzz.cc into fuzz/corpus/qmoe_code (layout in that file)."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def seed(n, k, entries, scales, offsets, codes):
    out = struct.pack("<BHH", n, k, len(entries))
    out += bytes(e[0] for e in entries)
    out += b"".join(struct.pack("<I", e[1]) for e in entries)
    out += b"".join(struct.pack("<I", e[2]) for e in entries)
    out += b"".join(struct.pack("<H", s) for s in scales)
    out += b"".join(struct.pack("<I", o) for o in offsets)
    out += b"".join(struct.pack("<H", c) for c in codes)
    return out


def main():
    corpus = os.path.join(HERE, "corpus", "qmoe_code")
    os.makedirs(corpus, exist_ok=True)
    singles = [(1, 0, 0), (1, 1, 0), (1, 0, 1)]
    zero_runs = [(length, 0, 0) for length in range(2, 33)]
    seeds = {
        # rows [+,0,0,-,0] and [0,0,0,0,0]
        "small": seed(2, 5, singles + [(2, 0, 0)], [0x3C00, 0xBC00], [0, 4, 7], [1, 3, 2, 0, 3, 3, 0]),
        # one row of 40 symbols: a 32-zero run, then a run "+0-" and 5 zeros
        "runs": seed(1, 40, singles + zero_runs + [(3, 0b001, 0b100)], [0x2E66], [0, 3],
                     [3 + 30, len(singles) + len(zero_runs), 3 + 3]),
        # a row that decodes short (rejected): exercises the length check
        "short": seed(1, 6, singles, [0x3C00], [0, 2], [0, 1]),
    }
    for name, data in seeds.items():
        with open(os.path.join(corpus, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()

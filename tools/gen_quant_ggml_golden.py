#!/usr/bin/env python3
"""Golden data for optiq's ggml block dequantizers (tests/quant/ggml_blocks_test.cpp).

Random but valid block bytes for Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, dequantized by an independent numpy
implementation of the ggml formulas (ggml-org/ggml src/ggml-quants.c dequantize_row_*, as summarized in
shared/research/formats.md §6). f16 fields are drawn from finite, moderate values.

Output: tests/data/quant/ggml_blocks_golden.txt, per case:
  case <type> <n_weights>
  bytes <block bytes as 2-hex-digit values>
  y <n f32 bit patterns as 8 hex digits>
Run: /usr/bin/python3 tools/gen_quant_ggml_golden.py [out_path]
"""
import os
import sys

import numpy as np


def f16_bytes(rng, lo=-2.0, hi=2.0):
    return np.array([rng.uniform(lo, hi)], dtype=np.float16).view(np.uint8)


def f16_of(b):
    return np.float32(np.frombuffer(bytes(b), dtype=np.float16)[0])


def q4_0(rng):
    blk = np.concatenate([f16_bytes(rng), rng.integers(0, 256, 16).astype(np.uint8)])
    d = f16_of(blk[0:2])
    qs = blk[2:18].astype(np.int32)
    y = np.concatenate([(qs & 15) - 8, (qs >> 4) - 8]).astype(np.float32) * d
    return blk, y


def q4_1(rng):
    blk = np.concatenate([f16_bytes(rng), f16_bytes(rng), rng.integers(0, 256, 16).astype(np.uint8)])
    d, m = f16_of(blk[0:2]), f16_of(blk[2:4])
    qs = blk[4:20].astype(np.int32)
    y = np.concatenate([qs & 15, qs >> 4]).astype(np.float32) * d + m
    return blk, y.astype(np.float32)


def q8_0(rng):
    blk = np.concatenate([f16_bytes(rng), rng.integers(0, 256, 32).astype(np.uint8)])
    d = f16_of(blk[0:2])
    qs = blk[2:34].view(np.int8).astype(np.float32)
    return blk, (qs * d).astype(np.float32)


def q4_k(rng):
    d = f16_bytes(rng, 0.0, 0.1)
    dmin = f16_bytes(rng, 0.0, 0.1)
    scales = rng.integers(0, 256, 12).astype(np.uint8)
    qs = rng.integers(0, 256, 128).astype(np.uint8)
    blk = np.concatenate([d, dmin, scales, qs])
    dd, dm = f16_of(d), f16_of(dmin)
    s = scales.astype(np.int32)
    sc = np.zeros(8, np.int32)
    mn = np.zeros(8, np.int32)
    for j in range(8):
        if j < 4:
            sc[j] = s[j] & 63
            mn[j] = s[j + 4] & 63
        else:
            sc[j] = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4)
            mn[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4)
    y = np.zeros(256, np.float32)
    q = qs.astype(np.int32)
    for c in range(4):
        chunk = q[32 * c:32 * c + 32]
        for h, vals in ((0, chunk & 15), (1, chunk >> 4)):
            j = 2 * c + h
            d1 = np.float32(dd * np.float32(sc[j]))
            m1 = np.float32(dm * np.float32(mn[j]))
            y[64 * c + 32 * h:64 * c + 32 * h + 32] = d1 * vals.astype(np.float32) - m1
    return blk, y


def q6_k(rng):
    ql = rng.integers(0, 256, 128).astype(np.uint8)
    qh = rng.integers(0, 256, 64).astype(np.uint8)
    scales = rng.integers(-128, 128, 16).astype(np.int8)
    d = f16_bytes(rng, -0.05, 0.05)
    blk = np.concatenate([ql, qh, scales.view(np.uint8), d])
    dd = f16_of(d)
    y = np.zeros(256, np.float32)
    # direct bit layout: element e of half h (0..127): quarter k = e // 32, l = e % 32
    for h in range(2):
        for e in range(128):
            k, l = e // 32, e % 32
            lo_byte = int(ql[64 * h + l + 32 * (k & 1)])
            lo = (lo_byte >> (4 * (k >> 1))) & 15
            hi = (int(qh[32 * h + l]) >> (2 * k)) & 3
            q = (lo | (hi << 4)) - 32
            sc = np.float32(scales[8 * h + e // 16])
            y[128 * h + e] = dd * sc * np.float32(q)
    return blk, y


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "..", "tests", "data", "quant", "ggml_blocks_golden.txt")
    rng = np.random.default_rng(7)
    lines = []
    for name, fn, nblocks in (("q4_0", q4_0, 4), ("q4_1", q4_1, 4), ("q8_0", q8_0, 4),
                              ("q4_k", q4_k, 2), ("q6_k", q6_k, 2)):
        bs, ys = [], []
        for _ in range(nblocks):
            b, y = fn(rng)
            bs.append(b)
            ys.append(y)
        b = np.concatenate(bs)
        y = np.concatenate(ys).astype(np.float32)
        lines.append("case %s %d" % (name, y.size))
        lines.append("bytes " + " ".join("%02x" % v for v in b))
        lines.append("y " + " ".join("%08x" % v for v in y.view(np.uint32)))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()

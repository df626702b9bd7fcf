#!/usr/bin/env python3
"""Golden data for optiq's MLX affine quantizer (tests/quant/mlx_affine_test.cpp).

An independent numpy (float32) implementation of MLX's affine quantization (ml-explore/mlx
mlx/backend/cpu/quantized.cpp `quantize`): per group, f32 min/max, s = max((max-min)/n, 1e-7), negative
scale unless |min| > |max|, edge logic with q0 = rint(edge/s), q = clip(rint((w-bias)/s), 0, n); packing
as an LSB-first bit stream over little-endian bytes (np.packbits bitorder='little').

Output: tests/data/quant/mlx_affine_golden.txt, one case per block of lines:
  case <name> <bits> <group_size> <n>
  w <n f32 as 8-hex-digit bit patterns>
  packed <n*bits/8 bytes as 2-hex-digit values>
  scales <n/group_size f32 bit patterns>
  biases <n/group_size f32 bit patterns>
Run: /usr/bin/python3 tools/gen_quant_mlx_golden.py [out_path]
"""
import os
import sys

import numpy as np


def quantize(w, bits, gs):
    w = np.asarray(w, dtype=np.float32).reshape(-1, gs)
    n_bins = np.float32((1 << bits) - 1)
    eps = np.float32(1e-7)
    w_max = w.max(axis=1)
    w_min = w.min(axis=1)
    mask = np.abs(w_min) > np.abs(w_max)
    scale = np.maximum((w_max - w_min) / n_bins, eps).astype(np.float32)
    scale = np.where(mask, scale, -scale).astype(np.float32)
    edge = np.where(mask, w_min, w_max).astype(np.float32)
    q0 = np.rint(edge / scale).astype(np.float32)
    nz = q0 != 0
    safe_q0 = np.where(nz, q0, np.float32(1)).astype(np.float32)
    scale = np.where(nz, edge / safe_q0, scale).astype(np.float32)
    bias = np.where(nz, edge, np.float32(0)).astype(np.float32)
    q = np.rint((w - bias[:, None]) / scale[:, None]).astype(np.float32)
    q = np.clip(q, np.float32(0), n_bins).astype(np.uint8)
    return q.reshape(-1), scale, bias


def pack(q, bits):
    # bit j of value k goes to stream bit k*bits + j; stream bit i is bit (i % 8) of byte i // 8
    bitplanes = ((q[:, None] >> np.arange(bits, dtype=np.uint8)[None, :]) & 1).astype(np.uint8)
    return np.packbits(bitplanes.reshape(-1), bitorder="little")


def f32hex(a):
    return " ".join("%08x" % v for v in np.asarray(a, dtype=np.float32).view(np.uint32))


def cases(rng):
    out = []
    for bits in (2, 3, 4, 5, 6, 8):
        for gs in (8, 16, 32, 64, 128):
            n = max(2 * gs, 64) if gs < 128 else 128
            # random normal rows, scaled
            out.append(("normal", bits, gs, (rng.standard_normal(n) * 0.05).astype(np.float32)))
    for bits in (2, 3, 4, 5, 6, 8):
        gs = 32
        groups = []
        g = rng.standard_normal(gs).astype(np.float32)
        g[3] = -4.0  # |min| > |max|: positive scale, edge = min
        groups.append(g)
        g = rng.standard_normal(gs).astype(np.float32)
        g[5] = 4.0  # |max| >= |min|: negative scale, edge = max
        groups.append(g)
        groups.append(np.full(gs, 0.3125, dtype=np.float32))       # all equal, positive
        groups.append(np.full(gs, -1.5, dtype=np.float32))         # all equal, negative
        groups.append(np.zeros(gs, dtype=np.float32))              # all zero
        g = rng.standard_normal(gs).astype(np.float32)
        g[::4] = 0.0  # zeros inside
        groups.append(g)
        # integer grids / halves: many exact ties in (w - bias) / s
        g = (rng.integers(-8, 9, gs) * 0.5).astype(np.float32)
        groups.append(g)
        g = (rng.integers(-3, 4, gs) * 0.25).astype(np.float32)
        g[0], g[1] = -3.0, 1.5
        groups.append(g)
        g = np.linspace(-1.0, 1.0, gs).astype(np.float32)           # symmetric: |min| == |max|
        groups.append(g)
        g = (rng.standard_normal(gs) * 1e-9).astype(np.float32)    # range below eps * n
        groups.append(g)
        g = np.abs(rng.standard_normal(gs)).astype(np.float32) + 2  # all positive, no zero
        groups.append(g)
        g = -np.abs(rng.standard_normal(gs)).astype(np.float32) - 2  # all negative
        groups.append(g)
        out.append(("edge", bits, gs, np.concatenate(groups)))
    # small groups with the same special values
    for bits in (3, 4, 5, 6):
        g = np.array([0.0, 0.5, -0.25, 1.0, -1.0, 0.75, 0.125, -0.5], dtype=np.float32)
        w = np.concatenate([g, -g, np.zeros(8, np.float32), np.full(8, 2.0, np.float32)])
        out.append(("small8", bits, 8, w))
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "..", "tests", "data", "quant", "mlx_affine_golden.txt")
    rng = np.random.default_rng(20240611)
    lines = []
    for name, bits, gs, w in cases(rng):
        q, s, b = quantize(w, bits, gs)
        packed = pack(q, bits)
        assert packed.size == w.size * bits // 8
        lines.append("case %s %d %d %d" % (name, bits, gs, w.size))
        lines.append("w " + f32hex(w))
        lines.append("packed " + " ".join("%02x" % v for v in packed))
        lines.append("scales " + f32hex(s))
        lines.append("biases " + f32hex(b))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", path, len(lines) // 5, "cases")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Makes tests/data/model/goldens.json: logits of small random models of every architecture x weight
format, from the independent NumPy reference (tools/ref_forward.py), and tests/data/model/goldens_hybrid.json:
the same for the hybrid and MoE architectures (tools/ref_hybrid.py) over a 200-token sequence.

    /usr/bin/python3 tools/gen_model_goldens.py build/optiq [hybrid]

The models are written by `optiq make-model` (deterministic RNG); their sha256 is recorded so the C++ test
can tell a changed generator from a wrong forward pass.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import ref_forward  # noqa: E402

ARCHS = ["tiny-llama", "tiny-qwen2", "tiny-qwen3"]
FORMATS = ["f32", "f16", "bf16", "mlx4", "mlx8", "mlx3", "mlx6", "gguf-f32", "gguf-f16", "gguf-q8_0", "gguf-q4_0",
           "gguf-q4_1", "gguf-q4_k", "gguf-q6_k"]
TOKENS = [1, 17, 250, 3, 99, 42, 7, 300, 128, 64, 5, 211]
POSITIONS = [3, 7, 11]  # rows of logits kept in the goldens


def digest(path):
    h = hashlib.sha256()
    files = [path] if os.path.isfile(path) else [os.path.join(path, f) for f in sorted(os.listdir(path))]
    for f in files:
        h.update(open(f, "rb").read())
    return h.hexdigest()


HYBRID_ARCHS = ["tiny-qwen3_moe", "tiny-qwen3_5", "tiny-qwen3_next", "tiny-qwen3_5_moe"]
HYBRID_FORMATS = ["f32", "f16", "bf16", "mlx4", "mlx8"]
# llama.cpp's qwen3moe, qwen35, qwen3next, qwen35moe
HYBRID_GGUF = {"tiny-qwen3_moe": ["gguf-f32", "gguf-q8_0", "gguf-q4_k"], "tiny-qwen3_5": ["gguf-f32", "gguf-q8_0"],
               "tiny-qwen3_next": ["gguf-f32", "gguf-q4_k"], "tiny-qwen3_5_moe": ["gguf-f32", "gguf-q8_0"]}
HYBRID_TOKENS = [(i * 7919 + 13) % 317 + 3 for i in range(200)]
HYBRID_POSITIONS = [0, 7, 62, 149, 199]  # prefill of 1, 8, 63, 150 and 200 tokens; decode after 150


def main_hybrid(optiq):
    out = {"tokens": HYBRID_TOKENS, "positions": HYBRID_POSITIONS, "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in HYBRID_ARCHS:
            for fmt in HYBRID_FORMATS + HYBRID_GGUF.get(arch, []):
                path = os.path.join(tmp, arch + "-" + fmt + (".gguf" if fmt.startswith("gguf") else ""))
                subprocess.run([optiq, "make-model", "--shape", arch, "--format", fmt, "-o", path], check=True,
                               stderr=subprocess.DEVNULL)
                cfg, tensors = ref_forward.load(path)
                logits = ref_forward.forward(cfg, tensors, HYBRID_TOKENS)
                out["cases"].append({"shape": arch, "format": fmt, "sha256": digest(path),
                                     "logits": [[round(float(v), 6) for v in logits[p]] for p in HYBRID_POSITIONS]})
                print(arch, fmt, "ok", file=sys.stderr)
    dst = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "model", "goldens_hybrid.json")
    with open(dst, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


def main():
    optiq = sys.argv[1] if len(sys.argv) > 1 else "build/optiq"
    if len(sys.argv) > 2 and sys.argv[2] == "hybrid":
        return main_hybrid(optiq)
    out = {"tokens": TOKENS, "positions": POSITIONS, "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ARCHS:
            for fmt in FORMATS:
                path = os.path.join(tmp, arch + "-" + fmt + (".gguf" if fmt.startswith("gguf") else ""))
                subprocess.run([optiq, "make-model", "--shape", arch, "--format", fmt, "-o", path], check=True,
                               stderr=subprocess.DEVNULL)
                cfg, tensors = ref_forward.load(path)
                logits = ref_forward.forward(cfg, tensors, TOKENS)
                out["cases"].append({"shape": arch, "format": fmt, "sha256": digest(path),
                                     "logits": [[round(float(v), 6) for v in logits[p]] for p in POSITIONS]})
                print(arch, fmt, "ok", file=sys.stderr)
    dst = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "model", "goldens.json")
    with open(dst, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()

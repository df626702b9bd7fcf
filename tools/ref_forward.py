#!/usr/bin/python3
"""Independent float64 NumPy reference for optiq's decoder models (llama, qwen2, qwen3; qwen3_moe, qwen3_next,
qwen3_5 and qwen3_5_moe through tools/ref_hybrid.py).

Reads a HF/MLX folder (safetensors: F32/F16/BF16 and MLX affine U32+scales+biases) or a GGUF file
(F32/F16/Q8_0/Q4_0/Q4_1/Q4_K/Q6_K), dequantizes every tensor with its own code (written from the format
descriptions, not from optiq's C++), and runs the forward pass. Used to make committed goldens:
    /usr/bin/python3 tools/gen_model_goldens.py
"""
import json
import os
import struct
import sys

import numpy as np

# ---------------------------------------------------------------- safetensors / MLX

ST_DTYPES = {"F32": np.float32, "F16": np.float16, "U32": np.uint32, "I32": np.int32, "U8": np.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = raw[base + b: base + e]
        if info["dtype"] == "BF16":
            u16 = np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16
            arr = u16.view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=ST_DTYPES[info["dtype"]])
        out[name] = arr.reshape(info["shape"])
    return out


def mlx_dequantize(wq, scales, biases, bits):
    rows = wq.shape[0]
    bytes_ = wq.view(np.uint8).reshape(rows, -1)
    bitstream = np.unpackbits(bytes_, axis=1, bitorder="little")
    n = bitstream.shape[1] // bits
    q = bitstream[:, : n * bits].reshape(rows, n, bits).astype(np.int64)
    q = (q * (1 << np.arange(bits))).sum(axis=2)
    gs = n // scales.shape[1]
    q = q.reshape(rows, scales.shape[1], gs).astype(np.float64)
    w = q * scales.astype(np.float64)[:, :, None] + biases.astype(np.float64)[:, :, None]
    return w.reshape(rows, n)


def _hybrid():
    """tools/ref_hybrid.py: qwen3_moe, qwen3_next, qwen3_5, qwen3_5_moe (MoE and Gated DeltaNet hybrids)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import ref_hybrid
    return ref_hybrid


HYBRID_TYPES = ("qwen3_moe", "qwen3_next", "qwen3_5", "qwen3_5_moe")


def load_folder(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    if cfg.get("model_type", "").replace("_text", "") in HYBRID_TYPES:
        return _hybrid().load_folder(d)
    raw = {}
    for fn in sorted(os.listdir(d)):
        if fn.startswith("model") and fn.endswith(".safetensors"):
            raw.update(read_safetensors(os.path.join(d, fn)))
    tensors = {}
    for name, arr in raw.items():
        if name.endswith(".scales") or name.endswith(".biases"):
            continue
        mod = name[: -len(".weight")] if name.endswith(".weight") else None
        if mod and mod + ".scales" in raw:
            scales, biases = raw[mod + ".scales"], raw[mod + ".biases"]
            cols = scales.shape[1] * (cfg["quantization"]["group_size"])
            bits = arr.shape[1] * 32 // cols
            tensors[name] = mlx_dequantize(arr, scales, biases, bits)
        else:
            tensors[name] = arr.astype(np.float64)
    c = dict(cfg)
    c["rope_traditional"] = False
    return c, tensors

# ---------------------------------------------------------------- GGUF

def f16(b):
    return np.frombuffer(b, dtype=np.float16).astype(np.float64)


def deq_q8_0(raw, n):
    blk = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 34)
    d = blk[:, :2].copy().view(np.float16).astype(np.float64)
    q = blk[:, 2:].copy().view(np.int8).astype(np.float64)
    return (d * q).reshape(-1)


def deq_q4_0(raw, n):
    blk = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    d = blk[:, :2].copy().view(np.float16).astype(np.float64)
    qs = blk[:, 2:]
    lo = (qs & 0xF).astype(np.float64) - 8
    hi = (qs >> 4).astype(np.float64) - 8
    return (d * np.concatenate([lo, hi], axis=1)).reshape(-1)


def deq_q4_1(raw, n):
    blk = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 20)
    d = blk[:, 0:2].copy().view(np.float16).astype(np.float64)
    m = blk[:, 2:4].copy().view(np.float16).astype(np.float64)
    qs = blk[:, 4:]
    q = np.concatenate([(qs & 0xF), (qs >> 4)], axis=1).astype(np.float64)
    return (d * q + m).reshape(-1)


def deq_q4_k(raw, n):
    blk = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 144)
    out = np.zeros((blk.shape[0], 256))
    for b in range(blk.shape[0]):
        d = f16(blk[b, 0:2].tobytes())[0]
        dmin = f16(blk[b, 2:4].tobytes())[0]
        s = blk[b, 4:16].astype(np.int64)
        qs = blk[b, 16:144]
        sc, mn = [], []
        for j in range(8):
            if j < 4:
                sc.append(s[j] & 63)
                mn.append(s[j + 4] & 63)
            else:
                sc.append((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4))
                mn.append((s[j + 4] >> 4) | ((s[j] >> 6) << 4))
        for c in range(4):
            q = qs[32 * c: 32 * c + 32].astype(np.float64)
            lo = np.floor(np.mod(q, 16))
            hi = np.floor(q / 16)
            out[b, 64 * c: 64 * c + 32] = d * sc[2 * c] * lo - dmin * mn[2 * c]
            out[b, 64 * c + 32: 64 * c + 64] = d * sc[2 * c + 1] * hi - dmin * mn[2 * c + 1]
    return out.reshape(-1)


def deq_q6_k(raw, n):
    blk = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 210)
    out = np.zeros((blk.shape[0], 256))
    for b in range(blk.shape[0]):
        ql = blk[b, 0:128].astype(np.int64)
        qh = blk[b, 128:192].astype(np.int64)
        sc = blk[b, 192:208].copy().view(np.int8).astype(np.int64)
        d = f16(blk[b, 208:210].tobytes())[0]
        for half in range(2):
            L, H, S, y = ql[64 * half:], qh[32 * half:], sc[8 * half:], 128 * half
            for l in range(32):
                isc = l // 16
                q1 = ((L[l] & 0xF) | (((H[l] >> 0) & 3) << 4)) - 32
                q2 = ((L[l + 32] & 0xF) | (((H[l] >> 2) & 3) << 4)) - 32
                q3 = ((L[l] >> 4) | (((H[l] >> 4) & 3) << 4)) - 32
                q4 = ((L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4)) - 32
                out[b, y + l] = d * S[isc] * q1
                out[b, y + l + 32] = d * S[isc + 2] * q2
                out[b, y + l + 64] = d * S[isc + 4] * q3
                out[b, y + l + 96] = d * S[isc + 6] * q4
    return out.reshape(-1)


GGML = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 8: ("Q8_0", 32, 34), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
        12: ("Q4_K", 256, 144), 14: ("Q6_K", 256, 210)}
DEQ = {"Q8_0": deq_q8_0, "Q4_0": deq_q4_0, "Q4_1": deq_q4_1, "Q4_K": deq_q4_k, "Q6_K": deq_q6_k}


def read_gguf(path):
    raw = open(path, "rb").read()
    pos = 0

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, raw, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def rd_str():
        nonlocal pos
        n = rd("Q")
        s = raw[pos: pos + n].decode("utf-8")
        pos += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def rd_val(t):
        if t == 8:
            return rd_str()
        if t == 9:
            et, n = rd("I"), rd("Q")
            return [rd_val(et) for _ in range(n)]
        return rd(scalar[t])

    assert rd("I") == 0x46554747
    rd("I")
    nt, nkv = rd("Q"), rd("Q")
    meta = {}
    for _ in range(nkv):
        k = rd_str()
        meta[k] = rd_val(rd("I"))
    infos = []
    for _ in range(nt):
        name = rd_str()
        nd = rd("I")
        ne = [rd("Q") for _ in range(nd)]
        t, off = rd("I"), rd("Q")
        infos.append((name, ne, t, off))
    align = meta.get("general.alignment", 32)
    base = (pos + align - 1) // align * align
    tensors = {}
    for name, ne, t, off in infos:
        kind, be, bb = GGML[t]
        n = int(np.prod(ne))
        nbytes = n // be * bb
        buf = raw[base + off: base + off + nbytes]
        if kind == "F32":
            arr = np.frombuffer(buf, dtype=np.float32).astype(np.float64)
        elif kind == "F16":
            arr = np.frombuffer(buf, dtype=np.float16).astype(np.float64)
        else:
            arr = DEQ[kind](buf, n)
        tensors[name] = arr.reshape(list(reversed(ne)))
    return meta, tensors


GG2HF = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
         "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
         "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm", "ffn_gate": "mlp.gate_proj",
         "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj", "ffn_gate_inp": "mlp.gate",
         # MoE experts, stacked [E, out, in] (ne reversed), as ref_hybrid represents them.
         "ffn_gate_exps": "mlp.switch_mlp.gate_proj", "ffn_up_exps": "mlp.switch_mlp.up_proj",
         "ffn_down_exps": "mlp.switch_mlp.down_proj"}


def load_gguf(path):
    meta, gt = read_gguf(path)
    a = meta["general.architecture"]
    if a in ("qwen3next", "qwen35", "qwen35moe"):
        return _hybrid().load_gguf(meta, gt)
    c = {"model_type": a, "hidden_size": meta[a + ".embedding_length"],
         "num_hidden_layers": meta[a + ".block_count"], "num_attention_heads": meta[a + ".attention.head_count"],
         "num_key_value_heads": meta[a + ".attention.head_count_kv"],
         "head_dim": meta.get(a + ".attention.key_length", meta[a + ".embedding_length"] // meta[a + ".attention.head_count"]),
         "rms_norm_eps": meta[a + ".attention.layer_norm_rms_epsilon"], "rope_theta": meta.get(a + ".rope.freq_base", 10000.0),
         "rope_traditional": a == "llama"}
    if a == "qwen3moe":  # llama.cpp's qwen3moe: every layer MoE, top-k probabilities renormalised
        c.update({"model_type": "qwen3_moe", "num_experts": meta[a + ".expert_count"],
                  "num_experts_per_tok": meta[a + ".expert_used_count"],
                  "moe_intermediate_size": meta[a + ".expert_feed_forward_length"], "norm_topk_prob": True,
                  "partial_rotary_factor": 1.0, "vocab_size": meta.get(a + ".vocab_size")})
    tensors = {}
    for name, arr in gt.items():
        if name == "token_embd.weight":
            tensors["model.embed_tokens.weight"] = arr
        elif name == "output_norm.weight":
            tensors["model.norm.weight"] = arr
        elif name == "output.weight":
            tensors["lm_head.weight"] = arr
        else:
            _, layer, mod, suffix = name.split(".")
            tensors["model.layers.%s.%s.%s" % (layer, GG2HF[mod], suffix)] = arr
    return c, tensors

# ---------------------------------------------------------------- forward


def rms(x, w, eps):
    return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def rope(x, pos, theta, traditional):
    # x: [T, heads, d]
    d = x.shape[-1]
    inv = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.asarray(pos, dtype=np.float64)[:, None] * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    if traditional:
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out
    a, b = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)


def forward(c, t, tokens):
    """Logits [T, vocab] for a token sequence (causal, positions 0..T-1)."""
    if c["model_type"] in HYBRID_TYPES:
        return _hybrid().forward(c, t, tokens)
    H, L = c["hidden_size"], c["num_hidden_layers"]
    nh, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    eps, theta, trad = c["rms_norm_eps"], c["rope_theta"], c["rope_traditional"]
    qwen3 = c["model_type"] == "qwen3"
    T = len(tokens)
    pos = np.arange(T)
    x = t["model.embed_tokens.weight"][tokens].astype(np.float64)

    def lin(name, h):
        y = h @ t[name + ".weight"].T
        if name + ".bias" in t:
            y = y + t[name + ".bias"]
        return y

    mask = np.triu(np.full((T, T), -np.inf), 1)
    for il in range(L):
        p = "model.layers.%d." % il
        h = rms(x, t[p + "input_layernorm.weight"], eps)
        q = lin(p + "self_attn.q_proj", h).reshape(T, nh, hd)
        k = lin(p + "self_attn.k_proj", h).reshape(T, nkv, hd)
        v = lin(p + "self_attn.v_proj", h).reshape(T, nkv, hd)
        if qwen3:
            q = rms(q, t[p + "self_attn.q_norm.weight"], eps)
            k = rms(k, t[p + "self_attn.k_norm.weight"], eps)
        q, k = rope(q, pos, theta, trad), rope(k, pos, theta, trad)
        # The KV cache stores K (after RoPE) and V in fp16: round them as it does.
        k = k.astype(np.float16).astype(np.float64)
        v = v.astype(np.float16).astype(np.float64)
        rep = nh // nkv
        out = np.zeros((T, nh, hd))
        for hh in range(nh):
            g = hh // rep
            s = q[:, hh, :] @ k[:, g, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            out[:, hh, :] = s @ v[:, g, :]
        x = x + lin(p + "self_attn.o_proj", out.reshape(T, nh * hd))
        h = rms(x, t[p + "post_attention_layernorm.weight"], eps)
        g = lin(p + "mlp.gate_proj", h)
        u = lin(p + "mlp.up_proj", h)
        x = x + lin(p + "mlp.down_proj", g / (1 + np.exp(-g)) * u)
    h = rms(x, t["model.norm.weight"], eps)
    head = t.get("lm_head.weight", t["model.embed_tokens.weight"])
    return h @ head.T


def load(path):
    return load_gguf(path) if path.endswith(".gguf") else load_folder(path)

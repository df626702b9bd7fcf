#!/usr/bin/python3
"""Independent float64 NumPy reference for optiq's MoE and hybrid decoders: qwen3_moe, qwen3_next, qwen3_5,
qwen3_5_moe. Written from the equations of docs/formats (sections 4.4, 4.5), not from another project's code.

Reached through tools/ref_forward.py: `ref_forward.load(path)` and `ref_forward.forward(cfg, tensors, tokens)`
dispatch here for these model types.

load_folder(d) reads raw HF (F32/F16/BF16) and MLX-converted (plain or affine-quantized) folders and returns one
representation, whatever the layout:
  - names "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "model.layers.{i}.<module>.weight";
    model.visual.* and mtp.* are dropped;
  - every norm is a standard RMSNorm weight (raw HF zero-centered norms of the hybrids get +1 here);
  - linear_attn.conv1d.weight is [C, K];
  - routed experts are mlp.switch_mlp.{gate,up,down}_proj.weight [E, out, in] (float64, dequantized).

forward(c, t, tokens) runs the model one token at a time (positions 0..T-1) with explicit caches: fp16-rounded
K/V for the full-attention layers, conv state [K-1, C] and delta-rule state S [Hv, Dv, Dk] for the DeltaNet layers.

gated_delta_recurrent / gated_delta_chunked are the per-head delta rule in its recurrent and chunked (WY) forms;
both take (q [T,Dk], k [T,Dk], v [T,Dv], alpha [T], beta [T], S0 [Dv,Dk]) and return (o [T,Dv], S_T [Dv,Dk]).
"""
import json
import os

import numpy as np

from ref_forward import GG2HF, mlx_dequantize, read_safetensors, rms, rope

MODEL_TYPES = ("qwen3_moe", "qwen3_next", "qwen3_5", "qwen3_5_moe")
HYBRIDS = ("qwen3_next", "qwen3_5", "qwen3_5_moe")
# Zero-centered (1 + w) norms of the raw HF hybrids. linear_attn.norm is NOT one of them.
SHIFTED_NORMS = ("input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_norm.weight",
                 "self_attn.k_norm.weight")
DROPPED_PREFIXES = ("model.visual.", "visual.", "vision_tower.", "model.vision_tower.", "mtp.", "model.mtp.",
                    "language_model.mtp.", "model.language_model.mtp.")
# Longest prefix first.
RENAMES = (("model.language_model.", "model."), ("language_model.model.", "model."),
           ("language_model.lm_head.", "lm_head."))


def base_type(model_type):
    return model_type[: -len("_text")] if model_type.endswith("_text") else model_type


def is_model_type(cfg):
    return base_type(cfg.get("model_type", "")) in MODEL_TYPES

# ---------------------------------------------------------------- loading


def load_config(d):
    top = json.load(open(os.path.join(d, "config.json")))
    if "text_config" in top:
        # VLM wrapper (qwen3_5*): the LM keys of text_config, plus the top-level keys it does not have.
        c = {k: v for k, v in top.items() if k not in ("text_config", "vision_config")}
        c.update(top["text_config"])
    else:
        c = dict(top)
    c["model_type"] = base_type(top["model_type"])
    rp = c.get("rope_parameters") or {}
    if rp.get("rope_type", rp.get("type", "default")) != "default":
        raise NotImplementedError("rope type %r" % rp.get("rope_type", rp.get("type")))
    # mrope_section is ignored: for text-only positions the three sections are identical (plain RoPE).
    c["rope_theta"] = float(rp.get("rope_theta", c.get("rope_theta", 10000.0)))
    default_prf = 1.0 if c["model_type"] == "qwen3_moe" else 0.25
    c["partial_rotary_factor"] = float(rp.get("partial_rotary_factor", c.get("partial_rotary_factor", default_prf)))
    c["rope_traditional"] = False
    quant = top.get("quantization") or top.get("quantization_config") or {}
    c["quantized"] = bool(quant)
    c["group_size"] = quant.get("group_size", 64)
    return c


def dequantize(wq, scales, biases, group_size):
    """MLX affine dequantization of a 2-D [out, in*bits/32] or stacked [.., out, in*bits/32] U32 tensor."""
    n_in = scales.shape[-1] * group_size
    bits = wq.shape[-1] * 32 // n_in
    assert bits * n_in == wq.shape[-1] * 32, "packed width does not match scales"
    lead = wq.shape[:-1]
    w = mlx_dequantize(np.ascontiguousarray(wq).reshape(-1, wq.shape[-1]), scales.reshape(-1, scales.shape[-1]),
                       biases.reshape(-1, biases.shape[-1]), bits)
    return w.reshape(lead + (n_in,))


def normalize_name(name):
    for a, b in RENAMES:
        if name.startswith(a):
            return b + name[len(a):]
    return name


def detect_mlx(raw_names, tensors, quantized):
    """True for the MLX-converted layout, False for raw HF. The DeltaNet conv weight decides ([C,1,K] raw HF,
    [C,K,1] MLX); without one (qwen3_moe) the names do (switch_mlp / language_model.* = MLX, per-expert or fused
    experts / model.language_model.* = raw HF), else a quantization key."""
    by_names = None
    if any(".switch_mlp." in n or n.startswith("language_model.") for n in raw_names):
        by_names = True
    elif any(".mlp.experts." in n or n.startswith("model.language_model.") for n in raw_names):
        by_names = False
    elif quantized:
        by_names = True
    by_conv = None
    for n, a in tensors.items():
        if n.endswith("linear_attn.conv1d.weight"):
            assert a.ndim == 3 and (a.shape[1] == 1) != (a.shape[2] == 1), "conv1d.weight %s" % (a.shape,)
            this = a.shape[2] == 1
            assert by_conv is None or by_conv == this, "conv1d layouts disagree"
            by_conv = this
    if by_conv is not None and by_names is not None:
        assert by_conv == by_names, "conv1d shape and tensor names disagree on the layout"
    return by_conv if by_conv is not None else bool(by_names)


def load_folder(d):
    c = load_config(d)
    raw = {}
    for fn in sorted(os.listdir(d)):
        if fn.startswith("model") and fn.endswith(".safetensors"):
            raw.update(read_safetensors(os.path.join(d, fn)))
    t = {}
    for name, arr in raw.items():
        if name.startswith(DROPPED_PREFIXES):
            continue
        if name.endswith(".scales") or name.endswith(".biases"):
            continue
        mod = name[: -len(".weight")] if name.endswith(".weight") else None
        if mod and mod + ".scales" in raw:
            w = dequantize(arr, raw[mod + ".scales"], raw[mod + ".biases"], c["group_size"])
        else:
            w = arr.astype(np.float64)
        t[normalize_name(name)] = w
    mlx = detect_mlx([n for n in raw if not n.startswith(DROPPED_PREFIXES)], t, c["quantized"])
    c["source_layout"] = "mlx" if mlx else "hf"
    hybrid = c["model_type"] in HYBRIDS
    for name in list(t):
        if name.endswith("linear_attn.conv1d.weight"):
            a = t[name]
            t[name] = a[:, :, 0] if mlx else a[:, 0, :]  # -> [C, K]
        elif hybrid and not mlx and (name == "model.norm.weight" or name.endswith(SHIFTED_NORMS)):
            t[name] = 1.0 + t[name]
    # Routed experts -> mlp.switch_mlp.{gate,up,down}_proj.weight [E, out, in].
    for il in range(c["num_hidden_layers"]):
        p = "model.layers.%d.mlp." % il
        if p + "experts.0.gate_proj.weight" in t:  # per-expert HF (qwen3_moe, qwen3_next)
            E = c["num_experts"]
            for proj in ("gate_proj", "up_proj", "down_proj"):
                names = [p + "experts.%d.%s.weight" % (e, proj) for e in range(E)]
                t[p + "switch_mlp.%s.weight" % proj] = np.stack([t.pop(n) for n in names])
        elif p + "experts.gate_up_proj" in t:  # fused HF (qwen3_5_moe): [E, 2I, H] = [gate rows | up rows]
            gu = t.pop(p + "experts.gate_up_proj")
            inter = c["moe_intermediate_size"]
            assert gu.shape == (c["num_experts"], 2 * inter, c["hidden_size"]), gu.shape
            assert t[p + "experts.down_proj"].shape == (c["num_experts"], c["hidden_size"], inter)
            t[p + "switch_mlp.gate_proj.weight"] = gu[:, :inter, :]
            t[p + "switch_mlp.up_proj.weight"] = gu[:, inter:, :]
            t[p + "switch_mlp.down_proj.weight"] = t.pop(p + "experts.down_proj")
    left = [n for n in t if ".mlp.experts." in n]
    assert not left, "unconverted expert tensors: %s" % left[:4]
    return c, t

# ---------------------------------------------------------------- gated delta rule (per value head)


def gated_delta_step(S, q, k, v, alpha, beta):
    """One token: S [Dv,Dk] <- alpha*S; m = S k; delta = beta*(v - m); S += delta k^T; o = S q."""
    S = alpha * S
    m = S @ k
    delta = beta * (v - m)
    S = S + np.outer(delta, k)
    return S @ q, S


def gated_delta_recurrent(q, k, v, alpha, beta, S0):
    """Recurrent delta rule over T tokens of one head. q,k [T,Dk], v [T,Dv], alpha,beta [T], S0 [Dv,Dk]."""
    S = np.array(S0, dtype=np.float64)
    o = np.zeros((q.shape[0], v.shape[1]))
    for i in range(q.shape[0]):
        o[i], S = gated_delta_step(S, q[i], k[i], v[i], alpha[i], beta[i])
    return o, S


def _solve_unit_lower(A, B):
    """X with (I + A) X = B, A strictly lower triangular (forward substitution)."""
    X = np.zeros_like(B)
    for i in range(B.shape[0]):
        X[i] = B[i] - A[i, :i] @ X[:i]
    return X


def gated_delta_chunked(q, k, v, alpha, beta, S0, chunk=64):
    """The same delta rule in chunked (WY) form. Within a chunk with start state S0 and cumulative decay
    gam_t = prod_{s<=t} alpha_s, S_t = gam_t S0 + sum_{i<=t} (gam_t/gam_i) d_i k_i^T, where the pseudo-values
    d_t = beta_t (v_t - gam_t S0 k_t - sum_{i<t} (gam_t/gam_i)(k_t.k_i) d_i), i.e. (I + A) D = diag(beta) V -
    diag(beta gam) K S0^T with A[t,i] = beta_t (gam_t/gam_i)(k_t.k_i) for i < t. WY: U = (I+A)^-1 diag(beta) V,
    W = (I+A)^-1 diag(beta gam) K, D = U - W S0^T. Then o_t = gam_t S0 q_t + sum_{i<=t} (gam_t/gam_i)(q_t.k_i) d_i
    and the next chunk starts from S_C = gam_C S0 + sum_i (gam_C/gam_i) d_i k_i^T."""
    T = q.shape[0]
    S = np.array(S0, dtype=np.float64)
    o = np.zeros((T, v.shape[1]))
    for c0 in range(0, T, chunk):
        sl = slice(c0, min(c0 + chunk, T))
        Q, K, V, b = q[sl], k[sl], v[sl], beta[sl]
        n = Q.shape[0]
        G = np.cumsum(np.log(alpha[sl]))  # log gam_t
        lower_incl = np.tril(np.ones((n, n), dtype=bool))
        diff = np.where(lower_incl, G[:, None] - G[None, :], -np.inf)
        ratio = np.exp(diff)  # gam_t/gam_i for i <= t, else 0
        gam = np.exp(G)
        A = np.tril(b[:, None] * ratio * (K @ K.T), -1)
        U = _solve_unit_lower(A, b[:, None] * V)
        W = _solve_unit_lower(A, (b * gam)[:, None] * K)
        D = U - W @ S.T
        o[sl] = gam[:, None] * (Q @ S.T) + (ratio * (Q @ K.T)) @ D
        S = gam[-1] * S + (D * np.exp(G[-1] - G)[:, None]).T @ K
    return o, S

# ---------------------------------------------------------------- forward


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def silu(x):
    return x * sigmoid(x)


def softplus(x):
    return np.logaddexp(0.0, x)


def l2norm(x):
    return x / np.sqrt(np.sum(x * x, axis=-1, keepdims=True) + 1e-6)


def layer_kinds(c):
    """'full_attention' / 'linear_attention' per layer."""
    L = c["num_hidden_layers"]
    if c["model_type"] == "qwen3_moe":
        return ["full_attention"] * L
    if c.get("layer_types"):
        kinds = list(c["layer_types"])
        assert len(kinds) == L and set(kinds) <= {"full_attention", "linear_attention"}, kinds
        return kinds
    n = c.get("full_attention_interval", 4)
    return ["full_attention" if (i + 1) % n == 0 else "linear_attention" for i in range(L)]


def is_moe_layer(c, i):
    return (c.get("num_experts", 0) > 0 and i not in (c.get("mlp_only_layers") or [])
            and (i + 1) % c.get("decoder_sparse_step", 1) == 0)


def forward(c, t, tokens):
    """Logits [T, vocab] (float64) for a token sequence at positions 0..T-1, computed token by token."""
    H, L, eps = c["hidden_size"], c["num_hidden_layers"], c["rms_norm_eps"]
    nh, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    theta = c["rope_theta"]
    rot = int(hd * c["partial_rotary_factor"])
    gated_attn = c["model_type"] in HYBRIDS
    kinds = layer_kinds(c)
    if "linear_attention" in kinds:
        Hk, Hv = c["linear_num_key_heads"], c["linear_num_value_heads"]
        Dk, Dv, Kc = c["linear_key_head_dim"], c["linear_value_head_dim"], c["linear_conv_kernel_dim"]
        r = Hv // Hk
        assert r * Hk == Hv
        kd, C = Hk * Dk, 2 * Hk * Dk + Hv * Dv

    def lin(name, x):
        y = t[name + ".weight"] @ x
        if name + ".bias" in t:
            y = y + t[name + ".bias"]
        return y

    def swiglu(prefix, x):
        return lin(prefix + "down_proj", silu(lin(prefix + "gate_proj", x)) * lin(prefix + "up_proj", x))

    def rope_partial(x, pos):  # x [heads, hd]: rotate-half RoPE on the first `rot` dims only
        y = rope(x[None, :, :rot], [pos], theta, False)[0]
        return np.concatenate([y, x[:, rot:]], axis=-1)

    def attention(p, st, h, pos):
        qp = lin(p + "q_proj", h)
        if gated_attn:
            qp = qp.reshape(nh, 2 * hd)  # per head: [query (hd) | gate (hd)]
            q, gate = qp[:, :hd], qp[:, hd:].reshape(nh * hd)
        else:
            q = qp.reshape(nh, hd)
        k = lin(p + "k_proj", h).reshape(nkv, hd)
        v = lin(p + "v_proj", h).reshape(nkv, hd)
        q = rms(q, t[p + "q_norm.weight"], eps)
        k = rms(k, t[p + "k_norm.weight"], eps)
        q, k = rope_partial(q, pos), rope_partial(k, pos)
        # The KV cache stores K (after norm and RoPE) and V in fp16: round them as it does.
        st["k"].append(k.astype(np.float16).astype(np.float64))
        st["v"].append(v.astype(np.float16).astype(np.float64))
        Ks, Vs = np.stack(st["k"]), np.stack(st["v"])  # [pos+1, nkv, hd]
        out = np.zeros((nh, hd))
        for hh in range(nh):
            g = hh // (nh // nkv)
            s = Ks[:, g, :] @ q[hh] / np.sqrt(hd)
            s = np.exp(s - s.max())
            out[hh] = (s / s.sum()) @ Vs[:, g, :]
        out = out.reshape(nh * hd)
        if gated_attn:
            out = out * sigmoid(gate)
        return lin(p + "o_proj", out)

    def deltanet(p, st, h):
        if p + "in_proj_qkvz.weight" in t:  # qwen3_next: per key head [q | k | v (r heads) | z (r heads)]
            g = lin(p + "in_proj_qkvz", h).reshape(Hk, 2 * Dk + 2 * r * Dv)
            mixed = np.concatenate([g[:, :Dk].reshape(-1), g[:, Dk:2 * Dk].reshape(-1),
                                    g[:, 2 * Dk:2 * Dk + r * Dv].reshape(-1)])
            z = g[:, 2 * Dk + r * Dv:].reshape(Hv, Dv)
            ba = lin(p + "in_proj_ba", h).reshape(Hk, 2 * r)  # per key head [b (r) | a (r)]
            b, a = ba[:, :r].reshape(Hv), ba[:, r:].reshape(Hv)
        else:  # qwen3_5
            mixed = lin(p + "in_proj_qkv", h)
            z = lin(p + "in_proj_z", h).reshape(Hv, Dv)
            b, a = lin(p + "in_proj_b", h), lin(p + "in_proj_a", h)
        assert mixed.shape == (C,)
        buf = np.vstack([st["conv"], mixed[None, :]])  # [K, C]: K-1 previous inputs, then this one
        w = t[p + "conv1d.weight"]  # [C, K]
        y = silu(np.sum(w.T * buf, axis=0))
        st["conv"] = buf[1:]
        q = l2norm(y[:kd].reshape(Hk, Dk)) * Dk ** -0.5
        k = l2norm(y[kd:2 * kd].reshape(Hk, Dk))
        v = y[2 * kd:].reshape(Hv, Dv)
        beta = sigmoid(b)
        alpha = np.exp(-np.exp(t[p + "A_log"]) * softplus(a + t[p + "dt_bias"]))
        o = np.zeros((Hv, Dv))
        for hv in range(Hv):
            o[hv], st["S"][hv] = gated_delta_step(st["S"][hv], q[hv // r], k[hv // r], v[hv], alpha[hv], beta[hv])
        o = rms(o, t[p + "norm.weight"], eps) * silu(z)
        return lin(p + "out_proj", o.reshape(Hv * Dv))

    def moe(p, h):
        logits = lin(p + "gate", h)
        pr = np.exp(logits - logits.max())
        pr /= pr.sum()
        top = np.argsort(-pr, kind="stable")[: c["num_experts_per_tok"]]  # ties: lower index first
        wts = pr[top]
        if c.get("norm_topk_prob", False):
            wts = wts / wts.sum()
        y = np.zeros(H)
        for e, we in zip(top, wts):
            G, U, D = (t[p + "switch_mlp.%s_proj.weight" % n][e] for n in ("gate", "up", "down"))
            y += we * (D @ (silu(G @ h) * (U @ h)))
        if p + "shared_expert.gate_proj.weight" in t:
            y += sigmoid(lin(p + "shared_expert_gate", h)[0]) * swiglu(p + "shared_expert.", h)
        return y

    states = []
    for il in range(L):
        if kinds[il] == "full_attention":
            states.append({"k": [], "v": []})
        else:
            states.append({"conv": np.zeros((Kc - 1, C)), "S": np.zeros((Hv, Dv, Dk))})
    head = t.get("lm_head.weight", t["model.embed_tokens.weight"])
    logits = np.zeros((len(tokens), head.shape[0]))
    for pos, tok in enumerate(tokens):
        x = t["model.embed_tokens.weight"][tok].astype(np.float64)
        for il in range(L):
            p = "model.layers.%d." % il
            h = rms(x, t[p + "input_layernorm.weight"], eps)
            if kinds[il] == "full_attention":
                x = x + attention(p + "self_attn.", states[il], h, pos)
            else:
                x = x + deltanet(p + "linear_attn.", states[il], h)
            h = rms(x, t[p + "post_attention_layernorm.weight"], eps)
            x = x + (moe(p + "mlp.", h) if is_moe_layer(c, il) else swiglu(p + "mlp.", h))
        logits[pos] = head @ rms(x, t["model.norm.weight"], eps)
    return logits

# ---------------------------------------------------------------- llama.cpp GGUF (qwen3next, qwen35, qwen35moe)
# What llama.cpp's converter does to these models, undone here (facts from its convert_hf_to_gguf.py and
# gguf-py: Qwen3NextModel, Qwen3_5TextModel, _LinearAttentionVReorderBase): norms are stored as 1 + w (as MLX
# does), A_log as ssm_a = -exp(A_log), dt_bias as ssm_dt.bias, conv1d as [C, K]; Qwen3-Next's in_proj_qkvz is
# split into attn_qkv ([q | k | v] over all heads) and attn_gate (z); Qwen3.5's value heads are stored tiled over the key heads (position j*n_k + g holds HF
# head g*r + j) in every tensor with a value-head axis.
GGUF_HYBRIDS = {"qwen3next": "qwen3_next", "qwen35": "qwen3_5", "qwen35moe": "qwen3_5_moe"}
# ref_forward's names (the common layer tensors, stacked experts) plus the hybrids' own.
GGUF_NAMES = {**GG2HF, "post_attention_norm": "post_attention_layernorm", "ffn_gate_shexp": "mlp.shared_expert.gate_proj",
              "ffn_up_shexp": "mlp.shared_expert.up_proj", "ffn_down_shexp": "mlp.shared_expert.down_proj",
              "ffn_gate_inp_shexp": "mlp.shared_expert_gate", "attn_qkv": "linear_attn.in_proj_qkv",
              "attn_gate": "linear_attn.in_proj_z", "ssm_beta": "linear_attn.in_proj_b", "ssm_alpha": "linear_attn.in_proj_a",
              "ssm_ba": "linear_attn.in_proj_ba", "ssm_conv1d": "linear_attn.conv1d", "ssm_norm": "linear_attn.norm",
              "ssm_out": "linear_attn.out_proj"}


def load_gguf(meta, gt):
    a = meta["general.architecture"]
    L = meta[a + ".block_count"] - meta.get(a + ".nextn_predict_layers", 0)
    hd = meta[a + ".attention.key_length"]
    Hk, Hv, Dk = meta[a + ".ssm.group_count"], meta[a + ".ssm.time_step_rank"], meta[a + ".ssm.state_size"]
    Dv = meta[a + ".ssm.inner_size"] // Hv
    c = {"model_type": GGUF_HYBRIDS[a], "hidden_size": meta[a + ".embedding_length"], "num_hidden_layers": L,
         "num_attention_heads": meta[a + ".attention.head_count"], "num_key_value_heads": meta[a + ".attention.head_count_kv"],
         "head_dim": hd, "rms_norm_eps": meta[a + ".attention.layer_norm_rms_epsilon"],
         "rope_theta": meta.get(a + ".rope.freq_base", 10000.0), "rope_traditional": False,
         "partial_rotary_factor": meta[a + ".rope.dimension_count"] / hd,
         "full_attention_interval": meta.get(a + ".full_attention_interval", 4),
         "linear_num_key_heads": Hk, "linear_num_value_heads": Hv, "linear_key_head_dim": Dk,
         "linear_value_head_dim": Dv, "linear_conv_kernel_dim": meta[a + ".ssm.conv_kernel"]}
    if a + ".expert_count" in meta:
        c.update({"num_experts": meta[a + ".expert_count"], "num_experts_per_tok": meta[a + ".expert_used_count"],
                  "moe_intermediate_size": meta[a + ".expert_feed_forward_length"], "norm_topk_prob": True,
                  "mlp_only_layers": [i for i in range(L) if "blk.%d.ffn_gate_inp.weight" % i not in gt]})
    r, kd = Hv // Hk, Hk * Dk
    tiled = a != "qwen3next" and r > 1

    def untile(x, axis, hd_):  # value-head axis: tiled (j, g) -> grouped (g, j)
        if not tiled:
            return x
        x = np.moveaxis(x, axis, 0)
        rest = x.shape[1:]
        x = x.reshape(r, Hk, hd_, *rest).swapaxes(0, 1).reshape(Hv * hd_, *rest)
        return np.moveaxis(x, 0, axis)

    t = {}
    for name, arr in gt.items():
        if name in ("token_embd.weight", "output_norm.weight", "output.weight"):
            t[{"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
               "output.weight": "lm_head.weight"}[name]] = arr
            continue
        parts = name.split(".")
        p = "model.layers.%s." % parts[1]
        rest = ".".join(parts[2:])
        if rest == "ssm_a":
            t[p + "linear_attn.A_log"] = np.log(-untile(arr, 0, 1))
        elif rest == "ssm_dt.bias":
            t[p + "linear_attn.dt_bias"] = untile(arr, 0, 1)
        else:
            mod, suffix = rest.rsplit(".", 1)
            hf = p + GGUF_NAMES[mod] + "." + suffix
            if mod in ("attn_qkv", "ssm_conv1d"):
                arr = np.concatenate([arr[:2 * kd], untile(arr[2 * kd:], 0, Dv)])
            elif mod == "attn_gate":
                arr = untile(arr, 0, Dv)
            elif mod in ("ssm_beta", "ssm_alpha"):
                arr = untile(arr, 0, 1)
            elif mod == "ssm_out":
                arr = untile(arr, 1, Dv)
            elif mod == "ffn_gate_inp_shexp":
                arr = arr.reshape(1, -1)
            t[hf] = arr
    if "shared_expert" in " ".join(t):
        c["shared_expert_intermediate_size"] = meta.get(a + ".expert_shared_feed_forward_length", 0)
    if a == "qwen3next":  # regroup [q | k | v] and z per key head: [q_g | k_g | v_g (r heads) | z_g (r heads)]
        for il in range(L):
            p = "model.layers.%d.linear_attn." % il
            if p + "in_proj_qkv.weight" not in t:
                continue
            qkv, z = t.pop(p + "in_proj_qkv.weight"), t.pop(p + "in_proj_z.weight")
            H = qkv.shape[1]
            q, k, v = qkv[:kd].reshape(Hk, Dk, H), qkv[kd:2 * kd].reshape(Hk, Dk, H), qkv[2 * kd:].reshape(Hk, r * Dv, H)
            t[p + "in_proj_qkvz.weight"] = np.concatenate([q, k, v, z.reshape(Hk, r * Dv, H)], axis=1).reshape(-1, H)
    return c, t

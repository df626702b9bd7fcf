#!/usr/bin/python3
"""Writes the seed corpus of every fuzz target (fuzz/corpus/<target>/): small valid inputs of each format,
plus a few near-misses, so that the fuzzers start from the structure they must parse.

    /usr/bin/python3 tools/gen_fuzz_seeds.py
"""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(__file__), "..", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


def openai():
    put("openai_request", "chat", json.dumps({"model": "m", "messages": [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}], "max_tokens": 16, "temperature": 0.7, "top_p": 0.9,
        "stop": ["\n\n"], "stream": True, "stream_options": {"include_usage": True}, "seed": 3}))
    put("openai_request", "tools", json.dumps({"model": "m", "messages": [{"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
         "function": {"name": "get", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
        "tools": [{"type": "function", "function": {"name": "get", "parameters": {"type": "object",
                   "properties": {"city": {"type": "string"}}, "required": ["city"]}}}], "tool_choice": "auto",
        "response_format": {"type": "json_object"}, "adapters": "a+b", "logprobs": True, "top_logprobs": 2}))
    put("openai_request", "completion", json.dumps({"model": "m", "prompt": "Once upon a time", "max_tokens": 8,
        "echo": False, "n": 1, "repetition_penalty": 1.1, "top_k": 40, "min_p": 0.05, "adapter": "x"}))
    put("openai_request", "bad", '{"messages": [{"role": 7}], "max_tokens": -1, "temperature": "hot"}')


def anthropic():
    put("anthropic_request", "basic", json.dumps({"model": "claude-x", "max_tokens": 64, "system": [{"type": "text",
        "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}], "messages": [{"role": "user",
        "content": [{"type": "text", "text": "ls"}]}], "stream": True, "temperature": 1, "stop_sequences": ["X"],
        "metadata": {"user_id": "u"}}))
    put("anthropic_request", "tools", json.dumps({"model": "m", "max_tokens": 32, "tools": [{"name": "Bash",
        "description": "run", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
        "tool_choice": {"type": "auto"}, "thinking": {"type": "enabled", "budget_tokens": 1024}, "messages": [
        {"role": "user", "content": "go"}, {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm",
         "signature": "s"}, {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "pwd"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text",
         "text": "/"}], "is_error": False}]}]}))
    put("anthropic_request", "bad", '{"max_tokens": "many", "messages": {"role": "user"}}')


def safetensors_bytes(tensors, meta=None):
    header, blobs, off = {}, [], 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def safetensors():
    f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.25)
    put("safetensors", "f32", safetensors_bytes([("model.norm.weight", "F32", [4], f32)], {"format": "pt"}))
    put("safetensors", "mixed", safetensors_bytes([("a", "BF16", [2, 2], b"\x80\x3f" * 4), ("b", "F16", [2], b"\x00\x3c" * 2),
                                                   ("q", "U32", [1, 2], b"\x01\x02\x03\x04" * 2), ("e", "F32", [0], b"")]))
    put("safetensors", "truncated", safetensors_bytes([("x", "F32", [8], f32)]))


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_bytes():
    kv = []

    def add(key, vtype, payload):
        kv.append(gguf_string(key) + struct.pack("<I", vtype) + payload)

    add("general.architecture", 8, gguf_string("llama"))
    add("llama.block_count", 4, struct.pack("<I", 1))
    add("llama.embedding_length", 4, struct.pack("<I", 8))
    add("tokenizer.ggml.model", 8, gguf_string("llama"))
    toks = ["<unk>", "<s>", "</s>", "\u2581a", "\u2581b", "<0x41>", "\u2581ab"]
    add("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(toks)) + b"".join(gguf_string(t) for t in toks))
    add("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, len(toks)) + struct.pack("<%df" % len(toks), *[-float(i) for i in range(len(toks))]))
    add("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, len(toks)) + struct.pack("<%di" % len(toks), 2, 3, 3, 1, 1, 6, 1))
    add("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 1))
    tensors = gguf_string("token_embd.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 8, 7) + struct.pack("<IQ", 0, 0)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kv)) + b"".join(kv) + tensors
    head += b"\0" * ((32 - len(head) % 32) % 32)
    return head + struct.pack("<56f", *[0.01 * i for i in range(56)])


def gguf():
    put("gguf", "llama_spm", gguf_bytes())
    put("gguf", "header_only", b"GGUF" + struct.pack("<IQQ", 3, 0, 0))


def tokenizer_json():
    byte_level = {"version": "1.0", "added_tokens": [{"id": 6, "content": "<|end|>", "special": True, "single_word": False,
        "lstrip": False, "rstrip": False, "normalized": False}],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+|\\s+"},
                          "behavior": "Isolated", "invert": False}, {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|end|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [], "special_tokens": {"<|end|>": {"id": "<|end|>", "ids": [6], "tokens": ["<|end|>"]}}},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "byte_fallback": False,
                  "vocab": {"H": 0, "e": 1, "l": 2, "o": 3, "He": 4, "ll": 5}, "merges": ["H e", ["l", "l"]]}}
    put("tokenizer_json", "byte_level_bpe", json.dumps(byte_level))
    spm = {"version": "1.0", "added_tokens": [], "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
           {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}, "pre_tokenizer": None,
           "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]},
           "model": {"type": "BPE", "byte_fallback": True, "unk_token": "<unk>", "vocab": {"<unk>": 0, "<0x41>": 1, "\u2581": 2, "a": 3, "\u2581a": 4},
                     "merges": ["\u2581 a"]}}
    put("tokenizer_json", "spm_byte_fallback", "TEXT:a aa A\n" + json.dumps(spm))


def jinja():
    put("jinja", "chatml", "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    put("jinja", "tools", "{%- if tools %}{% for t in tools %}{{ t | tojson(indent=2) }}{% endfor %}{% endif -%}"
        "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{{ m['role'] | upper }}:"
        "{{ m.content if m.content is string else m.content | map(attribute='text') | join('') }}"
        "{% if m.tool_calls %}{% for c in m.tool_calls %}{{ c.function.name }}({{ c.function.arguments | tojson }}){% endfor %}{% endif %}"
        "{% endfor %}{{ ns.n }}{{ raise_exception('x') if ns.n > 99 }}")
    put("jinja", "macros_data", "{% macro f(a, b=2) %}{{ a * b }}{{ caller() if caller }}{% endmacro %}{{ f(3) }}"
        "{{ x.items() | list | length }}{{ '%s-%d' % ('a', 1) }}{{ y[1:] }}{{ z.strip().split(',') }}\n----\n"
        '{"x": {"a": 1, "b": [1, 2]}, "y": "hello", "z": " a,b "}')


def config():
    put("config", "kv_config", json.dumps([{"layer_idx": 1, "bits": 8, "group_size": 64}, {"layer_idx": 3, "bits": 4, "group_size": 32}]))
    put("config", "kv_config_bad", '[{"layer_idx": 0, "bits": 3, "group_size": 7}, {"layer_idx": 1}]')
    put("config", "mlx_adapter", json.dumps({"fine_tune_type": "lora", "num_layers": -1,
        "lora_parameters": {"rank": 2, "scale": 2.0, "dropout": 0.0, "keys": ["self_attn.q_proj"]}}))
    put("config", "peft_adapter", json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "use_rslora": True,
        "target_modules": ["q_proj"], "rank_pattern": {"q_proj": 2}, "alpha_pattern": {}}))


if __name__ == "__main__":
    openai()
    anthropic()
    safetensors()
    gguf()
    tokenizer_json()
    jinja()
    config()

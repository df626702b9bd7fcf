#!/usr/bin/python3
"""Golden outputs for `optiq template` (tests/cli/template_cmd_test.cpp), rendered with Python jinja2 as
transformers configures it (the environment of tools/gen_chat_goldens.py).

Run with Debian's python (python3-jinja2 3.1.2), not the pyenv python3 on PATH:
    /usr/bin/python3 tools/gen_template_cli_goldens.py     # writes tests/data/cli/template_goldens.json

Each case is the command line the test runs (after `optiq template MODEL`; {data} is tests/data/cli, {shared}
is ../shared) and the text jinja2 renders from the same files: the messages and tools as the files hold them
(tool-call arguments, a JSON string on the wire, reach the template parsed into an object, as mlx_lm.server
does), the template arguments of --chat-template-args overridden by the request's chat_template_kwargs, and the
model's bos/eos tokens from its tokenizer_config.json.

Note on the test data: the tool schemas in tests/data/cli list their keys in alphabetical order. The server
parses request bodies with nlohmann::json, which sorts object keys, so a schema written as
{"type", "properties", "required"} reaches the template as {"properties", "required", "type"}, unlike
transformers / mlx_lm.server; with alphabetical keys both orders agree and the goldens test the rest.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_chat_goldens import SHARED, make_env, write_golden  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "cli")
OUT = os.path.join(DATA, "template_goldens.json")
MODEL = "models/stories260K-hf"
QWEN3 = "chat-templates/llama.cpp/Qwen-Qwen3-0.6B.jinja"
QWEN25 = "chat-templates/llama.cpp/Qwen-Qwen2.5-7B-Instruct.jinja"

# name, messages file, tools file (or None), add_generation_prompt, template, --chat-template-args (or None)
CASES = [
    ("qwen3_messages_tools", "template_messages.json", "template_tools.json", True, QWEN3, None),
    ("qwen3_messages_nogen", "template_messages.json", None, False, QWEN3, None),
    ("qwen3_request_object", "template_request.json", None, True, QWEN3, None),
    ("qwen3_template_args_flag", "template_messages.json", None, True, QWEN3, '{"enable_thinking": false}'),
    ("qwen3_request_overrides_flag", "template_request.json", None, True, QWEN3, '{"enable_thinking": true}'),
    ("qwen25_messages_tools", "template_messages.json", "template_tools.json", True, QWEN25, None),
]


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def parse_tool_arguments(messages):
    for m in messages:
        for call in m.get("tool_calls") or []:
            fn = call.get("function", {})
            if isinstance(fn.get("arguments"), str):
                fn["arguments"] = json.loads(fn["arguments"])
    return messages


def main():
    env = make_env()
    tok_config = load(os.path.join(SHARED, MODEL, "tokenizer_config.json"))
    out_cases = []
    for name, messages_file, tools_file, gen, template, args_flag in CASES:
        body = load(os.path.join(DATA, messages_file))
        if isinstance(body, list):
            body = {"messages": body}
        ctx = {"messages": parse_tool_arguments(body["messages"]), "add_generation_prompt": gen,
               "bos_token": tok_config["bos_token"], "eos_token": tok_config["eos_token"]}
        tools = load(os.path.join(DATA, tools_file)) if tools_file else body.get("tools")
        if tools:
            ctx["tools"] = tools
        if args_flag:
            ctx.update(json.loads(args_flag))
        ctx.update(body.get("chat_template_kwargs", {}))
        with open(os.path.join(SHARED, template), encoding="utf-8", newline="") as f:
            output = env.from_string(f.read()).render(**ctx)

        args = ["--messages", "{data}/" + messages_file]
        if tools_file:
            args += ["--tools", "{data}/" + tools_file]
        if gen:
            args.append("--add-generation-prompt")
        args += ["--chat-template", "{shared}/" + template]
        if args_flag:
            args += ["--chat-template-args", args_flag]
        out_cases.append({"name": name, "args": args, "output": output})
    doc = {"generator": "tools/gen_template_cli_goldens.py", "model": MODEL, "cases": out_cases}
    write_golden(OUT, doc)
    print(f"{len(out_cases)} cases -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()

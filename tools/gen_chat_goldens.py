#!/usr/bin/python3
"""Golden outputs for optiq's chat-template engine (src/chat/), rendered with Python jinja2 as
transformers configures it.

Run with Debian's python (python3-jinja2 3.1.2), not the pyenv python3 on PATH:
    /usr/bin/python3 tools/gen_chat_goldens.py            # writes tests/data/chat/goldens.json

Templates are read from ../shared/chat-templates (never copied into the repo); each golden names its template
by a path relative to shared/ (plus "#key" for ollama/templates.jsonl lines and "#chat_template" for
tokenizer_config/*.json).
"""
import glob
import json
import os
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("OPTIQ_SHARED_DIR", os.path.join(os.path.dirname(ROOT), "shared"))
OUT = os.path.join(ROOT, "tests", "data", "chat", "goldens.json")

# strftime_now is fixed so that goldens are reproducible; the C++ test injects the same instant.
FIXED_NOW = datetime(2025, 1, 15, 10, 30, 45)


class TemplateRaised(Exception):
    pass


class GenerationTracker(Extension):
    """transformers' AssistantTracker: {% generation %}...{% endgeneration %} renders its body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env():
    def raise_exception(message):
        raise TemplateRaised(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return FIXED_NOW.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. Zürich"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search",
        "description": "Search the web",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                       "required": ["query"]}}},
]

SYS = {"role": "system", "content": "You are a helpful assistant."}
U1 = {"role": "user", "content": "Hello! What's 2+2?"}
A1 = {"role": "assistant", "content": "2+2 = 4."}
U2 = {"role": "user", "content": "Thanks. Now say \"héllo\" in 中文."}

CASES = [
    ("user", {"messages": [U1], "add_generation_prompt": True}),
    ("user_nogen", {"messages": [U1], "add_generation_prompt": False}),
    ("system_user", {"messages": [SYS, U1], "add_generation_prompt": True}),
    ("multi", {"messages": [SYS, U1, A1, U2], "add_generation_prompt": True}),
    ("multi_nogen", {"messages": [SYS, U1, A1, U2], "add_generation_prompt": False}),
    ("tool_call", {"messages": [
        SYS,
        {"role": "user", "content": "What's the weather in Zürich?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temp\": 21.5}"},
    ], "tools": TOOLS, "add_generation_prompt": True}),
    ("tools_user", {"messages": [U1], "tools": TOOLS, "add_generation_prompt": True}),
    ("no_thinking", {"messages": [U1], "add_generation_prompt": True, "enable_thinking": False}),
    ("reasoning", {"messages": [
        U1, {"role": "assistant", "content": "4", "reasoning_content": "2 plus 2 is 4."}, U2,
    ], "add_generation_prompt": True}),
]


# Small templates exercising one feature each; rendered with SNIPPET_CONTEXT.
SNIPPET_CONTEXT = {
    "messages": [SYS, U1, A1, U2], "n": 7, "f": 2.5, "s": "  Hello, World  ", "d": {"b": 2, "a": 1, "c": [1, 2]},
    "l": [3, 1, 2], "words": ["b", "A", "c", "a"], "none": None, "t": True, "u8": "héllo 中文 😀",
    "objs": [{"name": "x", "v": 2}, {"name": "y", "v": 1}, {"name": "z"}], "nested": {"a": {"b": {"c": "deep"}}},
}
SNIPPETS = [
    # whitespace control, trim_blocks / lstrip_blocks
    "a\n  {% if t %}\n    x\n  {% endif %}\nb",
    "a  {%- if t -%}  x  {%- endif -%}  b",
    "a\n  {{ n }}\n  {#- c -#}  \n{# c2 #}\nb\n",
    "{% for i in l %}\n  {{ i }}\n{% endfor %}\n",
    "  {%+ if t %}x{% endif +%}\ny",
    "x {{- ' y ' -}} z\n\n",
    "{% raw %}{{ not }} {% evaluated %}{% endraw %}\n{%- raw -%}  a  {%- endraw %}",
    "line1\r\nline2\rline3\n",
    # printing / repr
    "{{ none }} {{ t }} {{ n }} {{ f }} {{ 1.0 }} {{ 0.1 }} {{ 1e-5 }} {{ 1e16 }} {{ 123456789.125 }} {{ -0.0 }} {{ 1/3 }}",
    "{{ l }} {{ d }} {{ (1,) }} {{ (1, 'a') }} {{ [none, t, 'it\\'s', \"q\\\"\", 'x\\ny'] }} {{ {} }} {{ [] }}",
    "{{ u8 }} {{ [u8] }} {{ undefined_var }}|{{ d.missing }}|",
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 2.0 * 3 }} {{ 'ab' * 3 }} {{ 1 + 2 * 3 - 4 }}",
    "{{ 'a' ~ 1 ~ none ~ t }} {{ 'a' + 'b' }} {{ [1] + [2] }} {{ -n }} {{ not t }} {{ 3 > 2 > 1 }} {{ 1 < 2 == 2 }}",
    "{{ 'b' in 'abc' }} {{ 2 in l }} {{ 'a' in d }} {{ 'z' not in d }} {{ t and 'yes' or 'no' }} {{ none or 0 or '' or 'last' }}",
    "{{ 'x' if t else 'y' }} {{ 'x' if not t else 'y' }}|{{ 'x' if none }}|",
    # loops
    "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.length }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }} {% endfor %}",
    "{% for m in messages if m.role != 'system' %}{{ loop.index }}:{{ m.role }}:{{ loop.previtem.role if loop.previtem is defined else '-' }}:{{ loop.nextitem.role if loop.nextitem is defined else '-' }} {% endfor %}",
    "{% for x in [] %}x{% else %}empty{% endfor %} {% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {% for k in d %}{{ k }}{% endfor %}",
    "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{% set x = 1 %}{% for i in l %}{% set x = i %}{{ x }}{% endfor %}{{ x }}",
    "{% set ns = namespace(c=0, s='') %}{% for i in l %}{% set ns.c = ns.c + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.c }} {{ ns.s }}",
    "{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }}{{ loop.cycle('x', 'y') }}{% endfor %}",
    "{% for c in 'héllo' %}[{{ c }}]{% endfor %} {{ 'héllo'[1] }} {{ 'héllo'[::-1] }} {{ l[::-1] }} {{ l[1:] }} {{ l[:-1] }} {{ l[-1] }} {{ messages[-1].role }}",
    # set / macro / call / filter blocks
    "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c %}  block {{ a }} {% endset %}[{{ c }}]{% set d2 | upper %}up{% endset %}{{ d2 }}",
    "{% macro m(a, b=2, c='x') %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}{{ m(1) }} {{ m(1, 3) }} {{ m(1, c='y') }} {{ m(a=5, b=6) }}",
    "{% macro outer(x) %}<{{ caller(x) }}>{% endmacro %}{% call(v) outer(3) %}got {{ v }}{% endcall %}",
    "{% macro rec(n) %}{{ n }}{% if n > 0 %}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(5) }}",
    "{% filter upper %}hello {{ n }}{% endfilter %} {% filter trim|replace('a', 'b') %}  aaa  {% endfilter %}",
    "{% with a = 3, b = 4 %}{{ a * b }}{% endwith %}{{ a }}",
    "{% generation %}gen {{ n }}{% endgeneration %}",
    # filters
    "{{ l|length }} {{ s|length }} {{ u8|length }} {{ d|length }} {{ l|first }} {{ l|last }} {{ l|join(',') }} {{ l|join }} {{ objs|join('|', attribute='name') }}",
    "[{{ s|trim }}] [{{ s|upper }}] [{{ s|lower }}] [{{ 'hello world-foo(bar)'|title }}] [{{ 'hELLO'|capitalize }}] [{{ s|replace('l', 'L') }}] [{{ s|replace('l', 'L', 1) }}] [{{ '--x--'|trim('-') }}]",
    "{{ undefined_var|default('dflt') }} {{ ''|default('e') }} {{ ''|default('e', true) }} {{ none|d('n', boolean=true) }} {{ n|default(3) }}",
    "{{ 'abc'|list }} {{ n|string }} {{ '42'|int + 1 }} {{ '3.7'|int }} {{ 'x'|int(5) }} {{ 3.9|int }} {{ '2.5'|float }} {{ 'x'|float }} {{ -3|abs }} {{ 2.567|round(2) }} {{ 2.5|round }} {{ 3.5|round }} {{ 2.1|round(0, 'ceil') }}",
    "{{ objs|map(attribute='name')|list }} {{ objs|map(attribute='v', default=0)|list }} {{ words|map('upper')|join }} {{ objs|selectattr('v')|map(attribute='name')|join }} {{ objs|rejectattr('v', 'defined')|list }}",
    "{{ l|select('odd')|list }} {{ l|reject('odd')|list }} {{ l|select('gt', 1)|list }} {{ objs|selectattr('name', 'equalto', 'y')|list }} {{ [0, 1, '', 'a', none]|select|list }}",
    "{{ d|items|list }} {{ d|dictsort }} {{ d|dictsort(reverse=true) }} {{ words|sort }} {{ words|sort(case_sensitive=true) }} {{ words|unique|list }} {{ objs|sort(attribute='name', reverse=true)|map(attribute='name')|join }}",
    "{{ l|reverse|list }} {{ 'abc'|reverse }} {{ l|min }} {{ l|max }} {{ words|max }} {{ l|sum }} {{ objs|sum(attribute='v', start=10) if false else '' }} {{ l|batch(2)|list }} {{ l|batch(2, 'f')|list }}",
    "{{ 'a\nb\n\nc'|indent(2) }}|{{ 'a\nb'|indent(2, true) }}|{{ 'a\n\nb'|indent(first=true, blank=true) }}|{{ 'one two  three'|wordcount }}|{{ 'ab'|center(6) }}|",
    "{{ '<a href=\"x\">&'|escape }} {{ '<b>'|safe }} {{ '<x>'|safe + '<y>' }} {{ 'a' + '<b>'|safe }}",
    "{{ d|tojson }} {{ objs|tojson }} {{ u8|tojson }} {{ 'q\"\\\n\t\x01'|tojson }} {{ [1.0, 2.5, none, t]|tojson }} {{ d|tojson(indent=2) }} {{ d|tojson(sort_keys=true) }} {{ {}|tojson(indent=2) }}",
    "{{ d|pprint }} {{ '%s-%s'|format('a', 1) }} {{ '%s and %d' % ('x', 3) }} {{ nested|tojson(separators=(',', ':')) }}",
    # tests
    "{{ n is defined }} {{ nope is defined }} {{ nope is undefined }} {{ none is none }} {{ s is string }} {{ n is number }} {{ f is number }} {{ t is number }} {{ n is integer }} {{ f is float }} {{ t is boolean }}",
    "{{ d is mapping }} {{ l is mapping }} {{ l is iterable }} {{ s is iterable }} {{ n is iterable }} {{ l is sequence }} {{ d is sequence }} {{ t is true }} {{ 1 is true }} {{ false is false }} {{ n is odd }} {{ n is even }} {{ 9 is divisibleby 3 }}",
    "{{ n is eq 7 }} {{ n is ne 7 }} {{ n is lt 8 }} {{ n is gt 8 }} {{ n is le 7 }} {{ n is ge 8 }} {{ 2 is in l }} {{ range is callable }} {{ n is callable }} {{ none is sameas none }} {{ 'abc' is lower }} {{ 'ABC' is upper }} {{ n is not none }}",
    # methods
    "[{{ s.strip() }}] [{{ s.lstrip() }}] [{{ s.rstrip() }}] [{{ 'xxaxx'.strip('x') }}] {{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ 'a\nb'.splitlines() }}",
    "{{ s.startswith('  H') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'abc'.upper() }} {{ 'ABC'.lower() }} {{ 'hello world'.title() }} {{ 'hello'.capitalize() }} {{ 'aaa'.replace('a', 'b', 2) }} {{ '{} and {name}'.format(1, name='n') }} {{ '-'.join(['a', 'b']) }}",
    "{{ 'hello'.find('l') }} {{ 'hello'.find('z') }} {{ 'hello'.count('l') }} {{ '123'.isdigit() }} {{ ' '.isspace() }} {{ 'ab'.isalpha() }} {{ 'Ab'.isupper() }} {{ 'héllo'.find('l') }}",
    "{{ d.items()|list }} {{ d.keys()|list }} {{ d.values()|list }} {{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }} {{ d['b'] }} {{ d.c[1] }} {{ nested.a.b.c }} {{ nested['a']['b'].c }} {{ l.index(2) }} {{ l.count(3) }}",
    "{{ messages[0].content }} {{ messages[0]['role'] }} {{ (messages|first).role }} {{ messages|selectattr('role', 'eq', 'user')|list|length }}",
    "{{ strftime_now('%Y-%m-%d %H:%M:%S %A %B %d %b') }}",
    "{{ dict(a=1, b='x') }} {{ namespace(a=1).a }} {{ range(3)|list }} {{ range(1, 10, 3)|list }} {{ [1, 2] == [1, 2] }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ (1, 2) < (1, 3) }}",
    # errors
    "{{ raise_exception('custom failure: ' ~ n) }}",
    "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}",
    "{{ nope.attr }}",
    "{{ nope() }}",
    "{{ 'a' + 1 }}",
    "{{ 1 < 'a' }}",
    "{{ l.append(4) }}",
    "{{ l|map('upper')|tojson }}",
    "{{ none|length }}",
    "{% set x = 1 %}{% set x.y = 2 %}",
    "{{ n|nosuchfilter }}",
]


def templates():
    out = []
    for folder in ("llama.cpp", "mistral-common", "ollama"):
        for p in sorted(glob.glob(os.path.join(SHARED, "chat-templates", folder, "*.jinja*"))):
            with open(p, encoding="utf-8", newline="") as f:
                out.append((os.path.relpath(p, SHARED), f.read()))
    jl = os.path.join(SHARED, "chat-templates", "ollama", "templates.jsonl")
    with open(jl, encoding="utf-8", newline="") as f:
        for i, line in enumerate(f):
            line = line.strip()
            if not line:
                continue
            for k, v in json.loads(line).items():
                out.append((f"{os.path.relpath(jl, SHARED)}#{i}", v))
    for p in sorted(glob.glob(os.path.join(SHARED, "chat-templates", "tokenizer_config", "*.json"))):
        with open(p, encoding="utf-8") as f:
            tmpl = json.load(f).get("chat_template")
        if isinstance(tmpl, str):
            out.append((os.path.relpath(p, SHARED) + "#chat_template", tmpl))
    return out


def write_golden(path, doc):
    """The golden files' format: UTF-8 JSON, one-space indent, non-ASCII as is, a final newline."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    env = make_env()
    goldens = []
    counts = {"ok": 0, "raise": 0, "error": 0, "syntax": 0}
    for name, src in templates():
        entry = {"template": name, "cases": []}
        try:
            tmpl = env.from_string(src)
        except jinja2.TemplateSyntaxError as e:
            entry["syntax_error"] = f"line {e.lineno}: {e.message}"
            counts["syntax"] += 1
            goldens.append(entry)
            continue
        for case_name, ctx in CASES:
            c = {"case": case_name}
            full = dict(ctx)
            full.setdefault("bos_token", "<s>")
            full.setdefault("eos_token", "</s>")
            try:
                c["output"] = tmpl.render(**full)
                counts["ok"] += 1
            except TemplateRaised as e:
                c["raise"] = str(e)
                counts["raise"] += 1
            except Exception as e:  # any other failure: C++ must fail too, message may differ
                c["error"] = f"{type(e).__name__}: {e}"
                counts["error"] += 1
            entry["cases"].append(c)
        goldens.append(entry)
    snippets = []
    for src in SNIPPETS:
        entry = {"template": src}
        try:
            entry["output"] = env.from_string(src).render(**SNIPPET_CONTEXT)
        except TemplateRaised as e:
            entry["raise"] = str(e)
        except Exception as e:
            entry["error"] = f"{type(e).__name__}: {e}"
        snippets.append(entry)
    doc = {
        "generator": "tools/gen_chat_goldens.py",
        "jinja2": jinja2.__version__,
        "now": FIXED_NOW.strftime("%Y-%m-%dT%H:%M:%S"),
        "bos_token": "<s>",
        "eos_token": "</s>",
        "cases": [{"name": n, "context": c} for n, c in CASES],
        "templates": goldens,
        "snippet_context": SNIPPET_CONTEXT,
        "snippets": snippets,
    }
    write_golden(OUT, doc)
    print(f"{len(goldens)} templates, cases: {counts}, {os.path.getsize(OUT)} bytes -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes data/calibration.txt: the default text `optiq kv-cache` calibrates on.

Generated, not fetched: a fixed-seed mix of the kinds of text a served model reads and writes (prose,
dialogue, instructions, code, JSON tool calls, arithmetic, lists and tables), assembled from building blocks
written for this project. Run with /usr/bin/python3; the output is byte-identical for the same script.
Each section starts on a new paragraph so that windows of a few hundred tokens see several domains.
"""
import json
import random
import sys

rng = random.Random(20261127)

NAMES = ["Ada", "Bruno", "Chen", "Dalia", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jun", "Kofi", "Lena",
         "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Yusuf", "Zoe"]
PLACES = ["the harbour town", "a mountain village", "the old library", "a busy train station", "the night market",
          "a research station in the Arctic", "the riverside workshop", "a small bakery", "the city archive",
          "an orchard on the hill", "a lighthouse", "the school observatory"]
OBJECTS = ["a brass compass", "a torn map", "a jar of seeds", "an unfinished letter", "a broken radio",
           "a notebook full of equations", "a wooden flute", "a set of rusty keys", "a faded photograph",
           "a box of old coins", "a paper kite", "a pocket telescope"]
FEELINGS = ["curious", "tired but hopeful", "nervous", "delighted", "quietly determined", "puzzled", "proud",
            "a little afraid", "calm", "impatient"]
VERBS = ["found", "repaired", "lost", "studied", "carried", "sketched", "wrapped", "measured", "hid", "returned"]
WEATHER = ["It had rained all morning", "The wind came in cold from the sea", "A thin fog covered the streets",
           "The afternoon was hot and still", "Snow had fallen during the night", "The sky cleared just before sunset"]
TOPICS = [
    ("photosynthesis", "Plants capture light with chlorophyll and use its energy to turn carbon dioxide and water "
     "into sugar, releasing oxygen. The light reactions make ATP and NADPH; the Calvin cycle spends them to fix carbon."),
    ("TCP", "TCP gives applications a reliable byte stream over an unreliable network. It numbers bytes, "
     "acknowledges what arrives, retransmits what is lost and slows down when the network is congested."),
    ("compound interest", "With compound interest the interest earned in each period is added to the balance, "
     "so the next period earns interest on it too. A balance P at rate r for n periods grows to P(1 + r)^n."),
    ("hash tables", "A hash table maps keys to slots with a hash function. Collisions are handled by chaining or "
     "by probing; with a good hash and a bounded load factor, lookups take constant time on average."),
    ("the water cycle", "Water evaporates from oceans and lakes, condenses into clouds, falls as rain or snow, "
     "and returns to the sea through rivers and groundwater. The sun's heat drives the whole cycle."),
    ("binary search", "Binary search finds a value in a sorted array by comparing it with the middle element and "
     "discarding the half that cannot contain it. It needs about log2(n) comparisons."),
    ("vaccines", "A vaccine trains the immune system with a harmless form of a pathogen or one of its proteins, "
     "so that memory cells respond quickly if the real infection arrives."),
    ("plate tectonics", "The Earth's outer shell is broken into plates that move a few centimetres a year. Where they "
     "meet, mountains rise, trenches form and earthquakes release built-up stress."),
]
TOOLS = [
    ("get_weather", {"city": "string", "unit": "celsius|fahrenheit"}),
    ("search_files", {"pattern": "string", "path": "string"}),
    ("send_email", {"to": "string", "subject": "string", "body": "string"}),
    ("run_shell", {"command": "string", "timeout_s": "integer"}),
    ("create_event", {"title": "string", "date": "YYYY-MM-DD", "attendees": "array"}),
]


def pick(xs):
    return xs[rng.randrange(len(xs))]


def story():
    a, b = rng.sample(NAMES, 2)
    place, obj = pick(PLACES), pick(OBJECTS)
    lines = [f"{pick(WEATHER)} when {a} {pick(VERBS)} {obj} in {place}."]
    lines.append(f"{a} felt {pick(FEELINGS)}, and went to find {b}, who knew more about such things.")
    lines.append(f'"Where did you get that?" {b} asked, turning it over. "{a}, this is older than the town itself."')
    lines.append(f"They spent the rest of the day following the clues it offered: a name scratched on one side, "
                 f"a date that made no sense, and a smell of salt that would not wash off.")
    if rng.random() < 0.5:
        lines.append(f"By evening {b} was {pick(FEELINGS)} and {a} had decided to keep the secret until morning.")
    else:
        lines.append(f"When the lamps were lit, {a} wrote everything down, because memory, {b} said, is a poor archive.")
    return " ".join(lines)


def explainer():
    topic, text = pick(TOPICS)
    q = pick(["Can you explain {} simply?", "What is {}?", "How does {} work?", "Give me a short summary of {}."]).format(topic)
    return f"User: {q}\nAssistant: {text} In short, {topic} is easier to remember once you see each step as a cause of the next."


def instructions():
    task = pick(["bake bread", "set up a Python virtual environment", "change a bicycle tyre", "write a cover letter",
                 "back up a laptop", "plant tomatoes"])
    n = rng.randint(3, 6)
    steps = [f"{i + 1}. " + pick(["Gather what you need first.", "Read every step before you start.",
                                  "Work slowly and check the result.", "Clean up as you go.",
                                  "Write down anything that surprised you.", "Ask for help if a step fails twice.",
                                  "Test the result before you rely on it."]) for i in range(n)]
    return f"How to {task}:\n" + "\n".join(steps)


def code():
    fn = pick(["moving_average", "count_words", "merge_sorted", "clamp_values", "parse_pairs", "find_duplicates"])
    w = rng.randint(2, 9)
    py = {
        "moving_average": f"def moving_average(xs, window={w}):\n    out = []\n    total = 0.0\n    for i, x in enumerate(xs):\n        total += x\n        if i >= window:\n            total -= xs[i - window]\n        out.append(total / min(i + 1, window))\n    return out\n",
        "count_words": "def count_words(text):\n    counts = {}\n    for word in text.lower().split():\n        word = word.strip('.,;:!?\"')\n        counts[word] = counts.get(word, 0) + 1\n    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))\n",
        "merge_sorted": "def merge_sorted(a, b):\n    i = j = 0\n    out = []\n    while i < len(a) and j < len(b):\n        if a[i] <= b[j]:\n            out.append(a[i]); i += 1\n        else:\n            out.append(b[j]); j += 1\n    return out + a[i:] + b[j:]\n",
        "clamp_values": f"int clamp_values(std::vector<int>& v, int lo, int hi) {{\n  int changed = 0;\n  for (int& x : v) {{\n    int y = std::min(std::max(x, lo), hi);\n    changed += y != x;\n    x = y;\n  }}\n  return changed;  // at most {w} per call in our tests\n}}\n",
        "parse_pairs": "function parsePairs(s) {\n  const out = {};\n  for (const part of s.split('&')) {\n    const [k, v = ''] = part.split('=');\n    if (k) out[decodeURIComponent(k)] = decodeURIComponent(v);\n  }\n  return out;\n}\n",
        "find_duplicates": "SELECT email, COUNT(*) AS n\nFROM users\nGROUP BY email\nHAVING COUNT(*) > 1\nORDER BY n DESC;\n",
    }[fn]
    return f"Here is `{fn}`:\n```\n{py}```\nIt runs in linear time except where it sorts."


def tool_call():
    name, params = pick(TOOLS)
    args = {}
    for k, t in params.items():
        if t == "integer":
            args[k] = rng.randint(1, 120)
        elif t == "array":
            args[k] = rng.sample(NAMES, 2)
        elif t == "YYYY-MM-DD":
            args[k] = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        elif "|" in t:
            args[k] = pick(t.split("|"))
        else:
            args[k] = pick(["Lisbon", "notes/*.md", "Quarterly report", "ls -la build", "Team sync", "/home/user/src"])
    call = json.dumps({"name": name, "arguments": args})
    result = json.dumps({"ok": True, "items": rng.randint(0, 9)})
    return f"<tool_call>\n{call}\n</tool_call>\n<tool_response>\n{result}\n</tool_response>\nThe tool returned {json.loads(result)['items']} items."


def arithmetic():
    a, b, c = rng.randint(12, 999), rng.randint(2, 60), rng.randint(3, 40)
    who = pick(NAMES)
    return (f"Problem: {who} packs {a} apples into boxes of {b}. How many full boxes are there, and how many apples are left? "
            f"Then {c} more apples arrive.\nSolution: {a} = {b} x {a // b} + {a % b}, so {a // b} full boxes and {a % b} left over. "
            f"With {c} more there are {a % b + c} loose apples, enough for {(a % b + c) // b} more box(es).")


def table():
    rows = ["| item | qty | price |", "|---|---|---|"]
    for _ in range(rng.randint(3, 6)):
        rows.append(f"| {pick(OBJECTS)[2:]} | {rng.randint(1, 20)} | {rng.randint(1, 300)}.{rng.randint(0, 99):02d} |")
    return "\n".join(rows)


def main(out_path, target_bytes=90_000):
    makers = [story, story, explainer, instructions, code, tool_call, arithmetic, table]
    parts, size = [], 0
    while size < target_bytes:
        p = pick(makers)()
        parts.append(p)
        size += len(p.encode()) + 2
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/calibration.txt")

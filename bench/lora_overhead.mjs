#!/usr/bin/env node
// Decode cost of mounted LoRA adapters (issue 7): one rank-R adapter on every attention and MLP projection of
// every layer against MODEL alone, measured by `optiq bench --adapter` (decode steps of the base and of the
// adapter alternate in one process; the overhead is the median of the pairs' ratios), --reps times; then one
// server batch of 8 streams on 8 different adapters against 8 streams on the base.
// The adapters are random (mlx-lm layout, F32), written to a temporary folder from MODEL's config.json.
//
//   node bench/lora_overhead.mjs MODEL_DIR [--rank 16] [--tokens 256] [--threads 2] [--reps 5] [--dtype F32|BF16]
// (--dtype: how the adapter files store A and B; optiq applies F32 files in f16, BF16 files in BF16)
//
// MODEL_DIR needs a tokenizer, e.g. `optiq make-model --shape qwen3-0.6b --vocab 50257 --format mlx4 -o M`
// plus tokenizer.json and tokenizer_config.json from ../shared/tokenizers/gpt2.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { bin, startServer, writeMlxAdapter } from '../tests/js/harness.mjs';

const opts = { model: '', rank: 16, tokens: 256, threads: 2, reps: 5, dtype: 'F32' };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (!a.startsWith('--')) { opts.model = a; continue; }
  const key = a.slice(2);
  if (!(key in opts) || i + 1 >= args.length) { console.error(`unknown option or missing value: ${a}`); process.exit(2); }
  opts[key] = key === 'dtype' ? args[++i].toUpperCase() : Number(args[++i]);
}
if (!opts.model) { console.error('usage: node bench/lora_overhead.mjs MODEL_DIR [--rank 16]'); process.exit(2); }
const env = { ...process.env, OPTIQ_THREADS: String(opts.threads) };

function writeAdapter(dir, name, seed) {
  const c = JSON.parse(readFileSync(path.join(opts.model, 'config.json'), 'utf8'));
  const hd = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  const q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd, H = c.hidden_size, I = c.intermediate_size, r = opts.rank;
  const mods = [['self_attn.q_proj', H, q], ['self_attn.k_proj', H, kv], ['self_attn.v_proj', H, kv], ['self_attn.o_proj', q, H],
    ['mlp.gate_proj', H, I], ['mlp.up_proj', H, I], ['mlp.down_proj', I, H]];
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5) * 0.02;
  const tensors = [];
  for (let l = 0; l < c.num_hidden_layers; l++)
    for (const [m, inp, out] of mods)
      for (const [leaf, shape] of [['lora_a', [inp, r]], ['lora_b', [r, out]]]) {
        const f = new Float32Array(shape[0] * shape[1]).map(rnd);
        // BF16: the top half of each f32 (truncated).
        const data = opts.dtype === 'BF16' ? Buffer.from(new Uint16Array(new Uint32Array(f.buffer).map((u) => u >>> 16)).buffer)
          : Buffer.from(f.buffer);
        tensors.push({ name: `model.layers.${l}.${m}.${leaf}`, dtype: opts.dtype, shape, data });
      }
  return writeMlxAdapter(path.join(dir, name), tensors, { rank: r, scale: 2.0 });
}

// One `optiq bench` run: decode tok/s of the base and with the adapter, and the median step overhead.
function benchPair(adapter) {
  const r = spawnSync(bin, ['bench', opts.model, '--gen', String(opts.tokens), '--prompt-len', '0', '--no-bandwidth', '--adapter', adapter],
    { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(r.stderr);
  const [base, one] = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  return { base: base.decode_tok_s, one: one.decode_tok_s, overhead: one.adapter_overhead };
}

function pairedOverhead(adapter) {
  const runs = Array.from({ length: opts.reps }, () => benchPair(adapter));
  const ov = runs.map((r) => r.overhead).sort((a, b) => a - b);
  const mid = ov.length >> 1;
  const median = ov.length % 2 ? ov[mid] : (ov[mid - 1] + ov[mid]) / 2;
  return { base: Math.max(...runs.map((r) => r.base)), one: Math.max(...runs.map((r) => r.one)), median, all: ov };
}

async function streams(base, models) {
  const t0 = performance.now();
  const rs = await Promise.all(models.map(async (model) => {
    const r = await fetch(base + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, prompt: 'Once upon a time', max_tokens: opts.tokens, temperature: 0 }) });
    return (await r.json()).usage.completion_tokens;
  }));
  return rs.reduce((a, b) => a + b, 0) / ((performance.now() - t0) / 1000);
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'optiq-lora-bench-'));
try {
  const adapters = Array.from({ length: 8 }, (_, i) => writeAdapter(dir, `a${i}`, 17 + i));
  const { base, one, median, all } = pairedOverhead(adapters[0]);
  console.log(`decode, one stream (optiq bench --adapter, ${opts.tokens} step pairs, ${opts.reps} runs): best base ${base.toFixed(2)} tok/s, ` +
    `best with one rank-${opts.rank} adapter on all 7 projections ${one.toFixed(2)} tok/s; step overhead ${(median * 100).toFixed(1)}% ` +
    `(median of the runs' medians; runs: ${all.map((o) => (o * 100).toFixed(1)).join(', ')}%)`);
  const server = await startServer(['--model', opts.model, '--max-concurrency', '8', ...adapters.flatMap((a, i) => ['--adapter', `a${i}=${a}`])],
    { OPTIQ_THREADS: String(opts.threads) });
  try {
    await streams(server.base, ['base']);
    // Rounds alternate, so that a noisy neighbour slows both sides of a round alike; the median round counts.
    const b8s = [], a8s = [];
    for (let i = 0; i < opts.reps; i++) {
      b8s.push(await streams(server.base, Array(8).fill('base')));
      a8s.push(await streams(server.base, adapters.map((_, j) => `a${j}`)));
    }
    const ratios = b8s.map((b, i) => b / a8s[i] - 1).sort((a, b) => a - b);
    const m = ratios.length >> 1;
    const ov8 = ratios.length % 2 ? ratios[m] : (ratios[m - 1] + ratios[m]) / 2;
    const b8 = Math.max(...b8s), a8 = Math.max(...a8s);
    console.log(`server, 8 streams in one batch (${opts.reps} alternating rounds): best base ${b8.toFixed(2)} tok/s, 8 different adapters ` +
      `${a8.toFixed(2)} tok/s: overhead ${(ov8 * 100).toFixed(1)}% (median of the rounds; rounds: ${ratios.map((o) => (o * 100).toFixed(1)).join(', ')}%)`);
    console.log(JSON.stringify({ rank: opts.rank, dtype: opts.dtype, base_tok_s: base, one_adapter_tok_s: one, one_adapter_median_overhead: median, batch8_base_tok_s: b8, batch8_adapters_tok_s: a8, batch8_median_overhead: ov8 }));
  } finally {
    server.stop();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

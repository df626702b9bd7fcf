#!/usr/bin/env node
// Load benchmark for the scheduler (issue 6): N concurrent streamed /v1/completions requests against a running
// server (optiq, and llama.cpp's llama-server on the same GGUF file when given), loopback, bounded.
//
// For each server it reports
//   - aggregate decode tokens/s at 1, 4, 8, 16 concurrent streams (completion tokens / wall time of the
//     burst, prefill included) and the ratio to one stream;
//   - the steady decode rate: tokens all streams received while every stream was decoding (after the last
//     first token, up to the first stream's last token) per second, and its ratio to one stream;
//   - p50 / p99 time to first token and inter-token latency over all streams of a burst;
//   - time to first token of a repeated long prefix (--prefix tokens): cold, then the same prefix with a
//     different tail (prefix cache);
//   - the largest inter-token gap seen by running streams while a --long prompt arrives (chunked prefill).
// Prompts are token id arrays (both servers take them), so both read the same tokens.
//
//   node bench/load.mjs MODEL.gguf [--llama-server PATH] [--threads 2] [--gen 32] [--prompt-len 128]
//        [--streams 1,4,8,16] [--prefix 4096] [--long 4096] [--slots 8] [--servers optiq,llama] [--kv-bits 16]
//
// --kv-bits 8 or 4: both servers keep K/V quantized (optiq --kv-bits B, llama-server -ctk/-ctv q8_0 or q4_0).
// MODEL: e.g. `optiq make-model --shape qwen3-0.6b --vocab 32000 --format gguf-q4_0 -o m.gguf`.
// The binary is build/optiq (OPTIQ_BIN overrides). Prints one table per server and one JSON line each.
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { bin, startServer } from '../tests/js/harness.mjs';

const opts = { model: '', 'llama-server': '', threads: 2, gen: 32, 'prompt-len': 128, streams: '1,4,8,16', prefix: 4096,
  long: 4096, slots: 8, vocab: 32000, servers: 'optiq,llama', 'kv-bits': 16 };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--help' || a === '-h') { console.log('usage: node bench/load.mjs MODEL.gguf [--llama-server PATH] [options]'); process.exit(0); }
  if (!a.startsWith('--')) { opts.model = a; continue; }
  const key = a.slice(2);
  if (!(key in opts) || i + 1 >= args.length) { console.error(`unknown option or missing value: ${a}`); process.exit(2); }
  opts[key] = typeof opts[key] === 'number' ? Number(args[++i]) : args[++i];
}
if (!opts.model) { console.error('usage: node bench/load.mjs MODEL.gguf [--llama-server PATH]'); process.exit(2); }
const llamaKv = { 16: [], 8: ['-ctk', 'q8_0', '-ctv', 'q8_0'], 4: ['-ctk', 'q4_0', '-ctv', 'q4_0'] }[opts['kv-bits']];
if (!llamaKv) { console.error('--kv-bits takes 16, 8 or 4'); process.exit(2); }
const optiqKv = opts['kv-bits'] === 16 ? [] : ['--kv-bits', String(opts['kv-bits'])];

const quantile = (xs, q) => { if (!xs.length) return NaN; const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };
let seed = 1;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const tokens = (n) => Array.from({ length: n }, () => 100 + Math.floor(rand() * (opts.vocab - 200)));

// One streamed request: resolves with { ttft, gaps[], n } (ms, ms, completion tokens = text chunks).
async function streamOne(base, prompt, maxTokens, onToken) {
  const t0 = performance.now();
  const r = await fetch(base + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, stream: true, cache_prompt: true }) });
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  const dec = new TextDecoder();
  let buf = '', ttft = NaN, last = 0, n = 0;
  const gaps = [], times = [];
  for await (const chunk of r.body) {
    buf += dec.decode(chunk, { stream: true });
    const frames = buf.split('\n\n');
    buf = frames.pop();
    for (const f of frames) {
      if (!f.startsWith('data: {')) continue;
      const d = JSON.parse(f.slice(6));
      if (!d.choices?.[0]?.text) continue;
      const now = performance.now();
      if (n === 0) ttft = now - t0; else gaps.push(now - last);
      last = now;
      times.push(now);
      n++;
      onToken?.(now);
    }
  }
  return { ttft, gaps, n, times };
}

async function measure(name, base) {
  const out = { server: name, streams: {} };
  await streamOne(base, tokens(16), 4);  // warm-up
  for (const n of opts.streams.split(',').map(Number)) {
    const t0 = performance.now();
    const rs = await Promise.all(Array.from({ length: n }, () => streamOne(base, tokens(opts['prompt-len']), opts.gen)));
    const wall = (performance.now() - t0) / 1000;
    const total = rs.reduce((a, r) => a + r.n, 0);
    const ttfts = rs.map((r) => r.ttft), gaps = rs.flatMap((r) => r.gaps);
    // Steady decode: every stream past its first token, none finished.
    const from = Math.max(...rs.map((r) => r.times[0])), to = Math.min(...rs.map((r) => r.times[r.times.length - 1]));
    const inside = rs.reduce((a, r) => a + r.times.filter((t) => t > from && t <= to).length, 0);
    const steady = to > from && inside >= n ? inside / ((to - from) / 1000) : NaN;
    out.streams[n] = { tok_s: total / wall, steady_tok_s: steady, tokens: total, ttft_p50: quantile(ttfts, 0.5), ttft_p99: quantile(ttfts, 0.99),
      itl_p50: quantile(gaps, 0.5), itl_p99: quantile(gaps, 0.99) };
  }
  // A repeated long prefix: cold, then the same prefix with another tail.
  const prefix = tokens(opts.prefix);
  const cold = await streamOne(base, [...prefix, ...tokens(8)], 2);
  const warm = await streamOne(base, [...prefix, ...tokens(8)], 2);
  out.prefix = { tokens: opts.prefix, cold_ttft_ms: cold.ttft, warm_ttft_ms: warm.ttft, speedup: cold.ttft / warm.ttft };
  // Inter-token gaps of 4 running streams while a long prompt arrives.
  let arrived = 0, maxGap = 0, lastTok = new Map();
  const runners = Array.from({ length: 4 }, (_, i) => streamOne(base, tokens(32), 4 * opts.gen, (now) => {
    if (arrived && lastTok.has(i)) maxGap = Math.max(maxGap, now - Math.max(lastTok.get(i), arrived));
    lastTok.set(i, now);
  }));
  await new Promise((r) => setTimeout(r, 1500));
  arrived = performance.now();
  const longReq = streamOne(base, tokens(opts.long), 1);
  const [lr] = await Promise.all([longReq, ...runners]);
  out.long_prompt = { tokens: opts.long, its_ttft_ms: lr.ttft, max_gap_of_running_streams_ms: maxGap };
  return out;
}

function table(r) {
  const one = r.streams[1]?.tok_s;
  console.log(`\n== ${r.server}`);
  const oneSteady = r.streams[1]?.steady_tok_s;
  console.log('| streams | tok/s | x one stream | steady decode tok/s | x one stream | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const [n, s] of Object.entries(r.streams))
    console.log(`| ${n} | ${s.tok_s.toFixed(1)} | ${one ? (s.tok_s / one).toFixed(2) : '-'} | ${s.steady_tok_s.toFixed(1)} | ${oneSteady ? (s.steady_tok_s / oneSteady).toFixed(2) : '-'} | ${s.ttft_p50.toFixed(0)} | ${s.ttft_p99.toFixed(0)} | ${s.itl_p50.toFixed(1)} | ${s.itl_p99.toFixed(1)} |`);
  console.log(`prefix ${r.prefix.tokens} tokens: TTFT cold ${r.prefix.cold_ttft_ms.toFixed(0)} ms, repeated ${r.prefix.warm_ttft_ms.toFixed(0)} ms (${r.prefix.speedup.toFixed(1)}x)`);
  console.log(`a ${r.long_prompt.tokens}-token prompt arriving: its TTFT ${r.long_prompt.its_ttft_ms.toFixed(0)} ms; largest gap of 4 running streams ${r.long_prompt.max_gap_of_running_streams_ms.toFixed(0)} ms`);
  console.log(JSON.stringify(r));
}

function startLlama() {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const ctx = opts.slots * Math.max(opts.prefix + 64, opts.long + 64, opts['prompt-len'] + 4 * opts.gen + 64);
  const proc = spawn(opts['llama-server'], ['-m', opts.model, '-np', String(opts.slots), '-c', String(ctx), '-t', String(opts.threads),
    '--port', String(port), '-fa', 'on', '--no-warmup', ...llamaKv], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let log = '';
    const seen = (d) => {
      log += d;
      if (/listening on http/.test(log)) resolve({ base: `http://127.0.0.1:${port}`, stop: () => proc.kill('SIGTERM') });
    };
    proc.stdout.on('data', seen);
    proc.stderr.on('data', seen);
    proc.on('exit', (c) => reject(new Error(`llama-server exited ${c}:\n${log.slice(-3000)}`)));
  });
}

const which = opts.servers.split(',');
if (which.includes('optiq')) {
const optiq = await startServer(['--model', opts.model, '--max-concurrency', String(opts.slots), '--max-queue', '64', ...optiqKv],
  { OPTIQ_THREADS: String(opts.threads) });
try { table(await measure(`optiq (${bin}), --max-concurrency ${opts.slots}${optiqKv.length ? ' ' + optiqKv.join(' ') : ''}`, optiq.base)); } finally { optiq.stop(); }
}
if (opts['llama-server'] && which.includes('llama')) {
  const ls = await startLlama();
  try { table(await measure(`llama-server -np ${opts.slots}${llamaKv.length ? ' ' + llamaKv.join(' ') : ''}`, ls.base)); } finally { ls.stop(); }
}

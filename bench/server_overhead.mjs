#!/usr/bin/env node
// What `optiq serve` adds to each streamed token: the engine's own decode time per token (`optiq generate`, the
// same prompt, length and threads, no HTTP) against the interval between streamed tokens as a client sees them
// on /v1/chat/completions, /v1/completions and /v1/messages (stream: true, greedy, plain fetch). The difference
// is the server's overhead per token: scheduling, detokenizing, JSON, SSE, the socket, and the client's reading.
// A tiny model (default stories260K, ~0.1 ms a token) makes that overhead the larger part of the interval.
//
// Every endpoint decodes the same tokens as `optiq generate --prompt P`: the chat routes use a template that
// renders BOS + the message (tests/data/server/stories_template.jinja), and stories260K never ends a story
// with EOS, so each request runs its full --tokens (checked against the reported usage).
//
//   node bench/server_overhead.mjs [MODEL] [--tokens 256] [--reps 10] [--threads 1] [--prompt "Once upon a time"]
//
// Prints one table and one JSON line. The binary is build/optiq (OPTIQ_BIN overrides).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { bin, root, shared, startServer } from '../tests/js/harness.mjs';

const opts = { model: path.join(shared, 'models/stories260K/stories260K.gguf'), tokens: 256, reps: 10, threads: 1, prompt: 'Once upon a time' };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--help' || a === '-h') {
    console.log('usage: node bench/server_overhead.mjs [MODEL] [--tokens N] [--reps N] [--threads N] [--prompt TEXT]');
    process.exit(0);
  }
  if (!a.startsWith('--')) { opts.model = a; continue; }
  const key = a.slice(2);
  if (!(key in opts) || i + 1 >= args.length) { console.error(`unknown option or missing value: ${a}`); process.exit(2); }
  opts[key] = typeof opts[key] === 'number' ? Number(args[++i]) : args[++i];
}
const env = { OPTIQ_THREADS: String(opts.threads) };

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const quantile = (xs, q) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };

// The engine alone: `optiq generate` reports "generation: N tokens, X tokens/s".
function engineMsPerToken() {
  const r = spawnSync(bin, ['generate', opts.model, '--prompt', opts.prompt, '--max-tokens', String(opts.tokens)],
    { encoding: 'utf8', env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`optiq generate failed:\n${r.stderr}`);
  const m = /generation: (\d+) tokens, ([\d.]+) tokens\/s/.exec(r.stderr);
  if (!m) throw new Error(`no generation line in:\n${r.stderr}`);
  if (Number(m[1]) !== opts.tokens) throw new Error(`optiq generate stopped after ${m[1]} of ${opts.tokens} tokens`);
  return 1000 / Number(m[2]);
}

const endpoints = {
  '/v1/chat/completions': {
    body: { model: 'bench', messages: [{ role: 'user', content: opts.prompt }], stream_options: { include_usage: true } },
    text: (d) => d.choices?.[0]?.delta?.content,
    tokens: (d) => d.usage?.completion_tokens,
  },
  '/v1/completions': {
    body: { model: 'bench', prompt: opts.prompt, stream_options: { include_usage: true } },
    text: (d) => d.choices?.[0]?.text,
    tokens: (d) => d.usage?.completion_tokens,
  },
  '/v1/messages': {
    body: { model: 'bench', messages: [{ role: 'user', content: opts.prompt }] },
    text: (d) => (d.type === 'content_block_delta' ? d.delta.text : undefined),
    tokens: (d) => (d.type === 'message_delta' ? d.usage.output_tokens : undefined),
  },
};

// One streamed request: the arrival time of every SSE event that carries text, and the token count.
async function streamOnce(base, route) {
  const ep = endpoints[route];
  const res = await fetch(base + route, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': 'not-used' },
    body: JSON.stringify({ ...ep.body, max_tokens: opts.tokens, temperature: 0, stream: true }),
  });
  if (res.status !== 200) throw new Error(`${route}: HTTP ${res.status} ${await res.text()}`);
  const reader = res.body.getReader();
  const utf8 = new TextDecoder();
  const times = [];
  let buf = '', tokens;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const now = performance.now();
    buf += utf8.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const line = frame.split('\n').find((l) => l.startsWith('data: '));
      if (!line || line === 'data: [DONE]') continue;
      const d = JSON.parse(line.slice(6));
      if (ep.text(d)) times.push(now);
      tokens = ep.tokens(d) ?? tokens;
    }
  }
  if (tokens !== opts.tokens) throw new Error(`${route}: ${tokens} tokens streamed, not ${opts.tokens} (did the model stop early?)`);
  return times;
}

const server = await startServer(['--model', opts.model, '--chat-template', path.join(root, 'tests/data/server/stories_template.jinja')], env);
const routes = Object.keys(endpoints);
const intervals = Object.fromEntries(routes.map((r) => [r, []]));
const perToken = Object.fromEntries(routes.map((r) => [r, []]));
const reads = Object.fromEntries(routes.map((r) => [r, { events: 0, reads: 0 }]));
const engineRuns = [];
try {
  for (const route of routes) await streamOnce(server.base, route); // warm-up
  // Round robin, the engine alone included, so that a slower stretch of the machine does not fall on one of them.
  for (let i = 0; i < opts.reps; i++) {
    engineRuns.push(engineMsPerToken());
    for (const route of routes) {
      const t = await streamOnce(server.base, route);
      // Events read in one chunk share a time (an interval of 0): the median can fall below the engine's time.
      for (let k = 1; k < t.length; k++) intervals[route].push(t[k] - t[k - 1]);
      reads[route].events += t.length;
      reads[route].reads += new Set(t).size;
      // First to last text event, over the events between them (one token may carry no text, e.g. BOS).
      perToken[route].push((t.at(-1) - t[0]) / (t.length - 1));
    }
  }
} finally {
  server.stop();
}
const engineMs = median(engineRuns);
const rows = routes.map((route) => {
  const meanMs = median(perToken[route]);
  return { endpoint: route, tokens: opts.tokens, reps: opts.reps, median_interval_ms: median(intervals[route]),
    p90_interval_ms: quantile(intervals[route], 0.9), events_per_read: reads[route].events / reads[route].reads,
    mean_interval_ms: meanMs, engine_ms_per_token: engineMs, overhead_ms_per_token: meanMs - engineMs };
});

const f = (x) => x.toFixed(4);
console.log(`model: ${opts.model}, prompt: ${JSON.stringify(opts.prompt)}, ${opts.tokens} tokens x ${opts.reps} runs, threads: ${opts.threads}`);
console.log(`engine alone (optiq generate, median of ${opts.reps}): ${f(engineMs)} ms/token`);
console.log('| endpoint              | median interval ms | p90 interval ms | events/read | mean interval ms | engine ms/token | overhead ms/token |');
console.log('|-----------------------|--------------------|-----------------|-------------|------------------|-----------------|-------------------|');
for (const r of rows)
  console.log(`| ${r.endpoint.padEnd(21)} | ${f(r.median_interval_ms).padStart(18)} | ${f(r.p90_interval_ms).padStart(15)} | ${r.events_per_read.toFixed(2).padStart(11)} | ${f(r.mean_interval_ms).padStart(16)} | ${f(r.engine_ms_per_token).padStart(15)} | ${f(r.overhead_ms_per_token).padStart(17)} |`);
console.log('mean interval: first to last streamed token / tokens between (median over runs); overhead = mean interval - engine');
console.log('events/read > 1: the client read several tokens at once (intervals of 0 pull the median below the engine time)');
console.log(JSON.stringify({ bench: 'server_overhead', model: opts.model, prompt: opts.prompt, tokens: opts.tokens, reps: opts.reps,
  threads: opts.threads, engine_ms_per_token: engineMs,
  max_overhead_ms_per_token: Math.max(...rows.map((r) => r.overhead_ms_per_token)), endpoints: rows }));

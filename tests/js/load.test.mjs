// The server under load (issue 6): a burst past --max-concurrency + --max-queue is refused at once with
// 429 (OpenAI shape) / 529 overloaded_error (Anthropic shape) while the admitted requests complete; a storm of
// streamed requests of which half are cut off mid-stream leaves every other stream's text intact and every KV
// page back in the pool (GET /metrics). The model is the synthetic 12-layer Qwen3 of disconnect.test.mjs, slow
// enough per token (one thread) that requests overlap on any machine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { bin, needs, shared, startServer } from './harness.mjs';

const tokDir = path.join(shared, 'tokenizers/gpt2');
const skip = needs(tokDir, bin);

let dir, model;

before(() => {
  if (skip.skip) return;
  dir = mkdtempSync(path.join(os.tmpdir(), 'optiq-load-'));
  model = path.join(dir, 'model');
  const made = spawnSync(bin, ['make-model', '--shape', 'qwen3-0.6b', '--layers', '12', '--vocab', '50257', '--format', 'mlx4',
    '-o', model], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(path.join(tokDir, f), path.join(model, f));
});

after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

const postJson = (base, route, body) => fetch(base + route, { method: 'POST',
  headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' }, body: JSON.stringify(body) });

// The metrics page as { name: value } for the unlabelled samples.
async function metrics(base) {
  const text = await (await fetch(base + '/metrics')).text();
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+) (\S+)$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

// Long enough (seconds) that the whole burst has arrived before the first admitted request ends, even on a
// loaded machine.
const TOKENS = 100;

test('a burst past max-concurrency + max-queue: 4 served, 6 refused at once in each API\'s shape', skip, async () => {
  const server = await startServer(['--model', model, '--use-default-chat-template', '--max-concurrency', '2',
    '--max-queue', '2', '--prompt-cache-size', '0'], { OPTIQ_THREADS: '1' });
  try {
    const t0 = Date.now();
    const burst = [...Array(10).keys()].map(async (i) => {
      const anthropic = i % 2 === 1;
      const r = anthropic
        ? await postJson(server.base, '/v1/messages', { model: 'm', max_tokens: TOKENS, messages: [{ role: 'user', content: `hi ${i}` }] })
        : await postJson(server.base, '/v1/completions', { prompt: `hello ${i}`, max_tokens: TOKENS });
      return { anthropic, status: r.status, body: await r.json(), ms: Date.now() - t0 };
    });
    const results = await Promise.all(burst);
    const served = results.filter((r) => r.status === 200), refused = results.filter((r) => r.status !== 200);
    assert.equal(served.length, 4, JSON.stringify(results.map((r) => r.status)));
    assert.equal(refused.length, 6);
    for (const r of served) {
      if (r.anthropic) assert.equal(r.body.usage.output_tokens, TOKENS);
      else assert.equal(r.body.usage.completion_tokens, TOKENS);
    }
    const slowest = Math.max(...served.map((r) => r.ms));
    for (const r of refused) {
      if (r.anthropic) {
        assert.equal(r.status, 529);
        assert.equal(r.body.type, 'error');
        assert.equal(r.body.error.type, 'overloaded_error');
      } else {
        assert.equal(r.status, 429);
        assert.match(r.body.error.message, /busy/);
      }
      assert.ok(r.ms < slowest, `a refusal took ${r.ms} ms, as long as serving (${slowest} ms)`);
    }
    const m = await metrics(server.base);
    assert.equal(m.optiq_requests_rejected_total, 6);
    assert.equal(m.optiq_requests_finished_total, 4);
    // Served again once the burst is over.
    assert.equal((await postJson(server.base, '/v1/completions', { prompt: 'again', max_tokens: 2 })).status, 200);
  } finally {
    server.stop();
  }
});

// Streams /v1/completions; with cut, closes the connection after the first token's frame. Resolves with the text
// received and whether the stream ended with [DONE].
function stream(base, prompt, cut) {
  return new Promise((resolve, reject) => {
    const url = new URL(base + '/v1/completions');
    const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST',
      headers: { 'content-type': 'application/json' } }, (res) => {
      let buf = '', text = '', done = false;
      res.on('data', (d) => {
        buf += d;
        const frames = buf.split('\n\n');
        buf = frames.pop();
        for (const f of frames) {
          if (f === 'data: [DONE]') done = true;
          else if (f.startsWith('data: {')) text += JSON.parse(f.slice(6)).choices?.[0]?.text ?? '';
        }
        if (cut && text.length > 0) { req.destroy(); resolve({ text, done: false, cut: true }); }
      });
      res.on('end', () => resolve({ text, done, cut: false }));
      res.on('error', () => resolve({ text, done, cut: true }));
    });
    req.on('error', (e) => (cut ? resolve({ text: '', done: false, cut: true }) : reject(e)));
    req.end(JSON.stringify({ prompt, max_tokens: 6, stream: true, temperature: 0 }));
  });
}

test('disconnect storm: 200 streams, half cut mid-stream; the rest intact, every KV page back', skip, async () => {
  const server = await startServer(['--model', model, '--max-concurrency', '8', '--max-queue', '256',
    '--prompt-cache-size', '0'], { OPTIQ_THREADS: '1' });
  try {
    const prompts = ['The cat', 'Once upon a time', 'A storm is coming', 'Numbers: 1, 2, 3'];
    const want = [];
    for (const p of prompts) {
      const r = await (await postJson(server.base, '/v1/completions', { prompt: p, max_tokens: 6, temperature: 0 })).json();
      want.push(r.choices[0].text);
    }
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const jobs = [...Array(200).keys()].map((i) => ({ p: i % prompts.length, cut: rand() < 0.5 }));
    const results = await Promise.all(jobs.map((j) => stream(server.base, prompts[j.p], j.cut)));
    let completed = 0;
    results.forEach((r, i) => {
      if (jobs[i].cut) return;
      completed++;
      assert.ok(r.done, `stream ${i} did not end with [DONE]`);
      assert.equal(r.text, want[jobs[i].p], `stream ${i}`);
    });
    assert.ok(completed > 60 && completed < 140, `${completed} streams ran to the end`);
    // Cancelled sequences are retired within a step; then nothing holds a page.
    let m;
    for (let i = 0; i < 100; i++) {
      m = await metrics(server.base);
      if (m.optiq_requests_running === 0 && m.optiq_requests_waiting === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(m.optiq_requests_running, 0);
    assert.equal(m.optiq_requests_waiting, 0);
    assert.equal(m.optiq_kv_cache_blocks_used, 0);
    assert.equal(m.optiq_kv_cache_used_bytes, 0);
    assert.equal(m.optiq_requests_finished_total, 204);
    assert.ok(m.optiq_time_to_first_token_seconds_count >= completed);
  } finally {
    server.stop();
  }
});

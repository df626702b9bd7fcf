// A client that goes away stops its generation: a streamed request within one token of the disconnect, a
// non-streamed one while it waits; the server keeps serving. The model must be slow enough per token that
// "one token" is longer than the client's reaction time on a busy machine, so this builds a synthetic
// Qwen3-shaped model (28 layers, GPT-2 vocabulary from ../shared/tokenizers, random weights, about 28 ms
// per token on one thread; 12 layers took 12-14 ms once the 4-bit kernels got faster, close to the handlers'
// 10 ms poll of the connection) with `optiq make-model`. The server logs how many tokens a cancelled request generated.
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

let dir, server;

before(async () => {
  if (skip.skip) return;
  dir = mkdtempSync(path.join(os.tmpdir(), 'optiq-slow-'));
  const model = path.join(dir, 'model');
  const made = spawnSync(bin, ['make-model', '--shape', 'qwen3-0.6b', '--layers', '28', '--vocab', '50257', '--format', 'mlx4',
    '-o', model], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(path.join(tokDir, f), path.join(model, f));
  server = await startServer(['--model', model, '--log-level', 'info'], { OPTIQ_THREADS: '1' });
});

after(() => {
  server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// POSTs a /v1/completions body; resolves with the request and response objects once headers arrive.
function post(body) {
  return new Promise((resolve, reject) => {
    const url = new URL(server.base + '/v1/completions');
    const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST',
      headers: { 'content-type': 'application/json' } }, (res) => resolve({ req, res }));
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

// Waits for the server's "request cancelled after N of at most M generated tokens" line after `from`.
async function cancelledAfter(from) {
  for (let i = 0; i < 200; i++) {
    const m = /request cancelled after (\d+) of at most (\d+) generated tokens/.exec(server.log().slice(from));
    if (m) return { generated: Number(m[1]), max: Number(m[2]) };
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail('the server never logged the cancellation:\n' + server.log().slice(from));
}

async function stillServes() {
  const r = await fetch(server.base + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'hello', max_tokens: 3 }) });
  assert.equal(r.status, 200);
  assert.equal((await r.json()).usage.completion_tokens, 3);
}

test('a streaming client that disconnects stops its generation within one token', skip, async () => {
  const from = server.log().length;
  const { req, res } = await post({ prompt: 'hello', max_tokens: 400, stream: true });
  assert.equal(res.statusCode, 200);
  const received = await new Promise((resolve) => {
    let n = 0, buf = '';
    res.on('data', (d) => {
      buf += d;
      const frames = buf.split('\n\n');
      buf = frames.pop();
      n += frames.filter((f) => f.startsWith('data: {')).length;
      if (n >= 5) { req.destroy(); resolve(n); }
    });
  });
  const c = await cancelledAfter(from);
  assert.equal(c.max, 400);
  // When the client closed after `received` tokens the engine was computing token received+1; that one is
  // the last. (Noticing the close only when a write fails would let it generate one or two more.)
  assert.ok(c.generated <= received + 1, `generated ${c.generated} tokens, client read ${received}`);
  await stillServes();
});

test('a non-streaming client that disconnects while waiting stops its generation', skip, async () => {
  const from = server.log().length;
  const req = http.request(server.base + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' } });
  req.on('error', () => {});
  req.end(JSON.stringify({ prompt: 'hello', max_tokens: 400 }));
  await new Promise((r) => setTimeout(r, 300));
  req.destroy();
  const c = await cancelledAfter(from);
  assert.equal(c.max, 400);
  assert.ok(c.generated < 200, `generated ${c.generated} of 400 tokens after the client left at 300 ms`);
  await stillServes();
});

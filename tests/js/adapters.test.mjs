// Mounted LoRA adapters through the server (issue 7): two adapters over stories260K, picked per request by
// the model field (OpenAI and Anthropic alike) or the body's adapter field, streamed concurrently; each answer
// is the greedy text `optiq generate --adapter` gives for that adapter alone. Unknown adapters are 400s in each
// API's shape; KV computed under one adapter never seeds a request under another.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { bin, needs, root, shared, startServer, writeRandomAdapter } from './harness.mjs';

const modelDir = path.join(shared, 'models/stories260K-hf');
const skip = needs(modelDir, bin);
const PROMPT = 'Once upon a time';
const TOKENS = 24;

let dir, server;
const want = {};

// An mlx-lm adapter folder with random weights on q_proj and down_proj of every layer.
function writeAdapter(name, seed) {
  const cfg = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8'));
  return writeRandomAdapter(path.join(dir, name), cfg, seed);
}

function generate(...extra) {
  const r = spawnSync(bin, ['generate', modelDir, '--prompt', PROMPT, '--max-tokens', String(TOKENS), '--quiet', ...extra], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.replace(/\n$/, '');
}

before(async () => {
  if (skip.skip) return;
  dir = mkdtempSync(path.join(os.tmpdir(), 'optiq-adapters-'));
  const a = writeAdapter('agent-a', 7), b = writeAdapter('agent-b', 99);
  want.base = generate();
  want.a = generate('--adapter', a);
  want.b = generate('--adapter', b);
  want.cDir = writeAdapter('agent-c', 4242);
  want.c = generate('--adapter', want.cDir);
  server = await startServer(['--model', modelDir, '--adapter', `agent-a=${a}`, '--adapter', `agent-b=${b}`,
    '--chat-template', path.join(root, 'tests/data/server/stories_template.jinja')]);
});

after(() => {
  server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const openai = () => new OpenAI({ baseURL: server.base + '/v1', apiKey: 'x', maxRetries: 0 });
const anthropic = () => new Anthropic({ baseURL: server.base, apiKey: 'x', maxRetries: 0 });

async function streamedText(stream, pick) {
  let text = '';
  for await (const c of stream) text += pick(c) ?? '';
  return text;
}

test('each adapter changes the text (the test means something)', skip, () => {
  assert.notEqual(want.a, want.base);
  assert.notEqual(want.b, want.base);
  assert.notEqual(want.a, want.b);
});

test('two requests naming different adapters, streamed concurrently, each get their adapter\'s greedy text', skip, async () => {
  const [a, b, none, viaField] = await Promise.all([
    openai().completions.create({ model: 'agent-a', prompt: PROMPT, max_tokens: TOKENS, temperature: 0, stream: true })
      .then((s) => streamedText(s, (c) => c.choices[0]?.text)),
    anthropic().messages.create({ model: 'agent-b', max_tokens: TOKENS, messages: [{ role: 'user', content: PROMPT }], stream: true })
      .then((s) => streamedText(s, (e) => (e.type === 'content_block_delta' ? e.delta.text : ''))),
    openai().completions.create({ model: 'stories', prompt: PROMPT, max_tokens: TOKENS, temperature: 0, stream: true })
      .then((s) => streamedText(s, (c) => c.choices[0]?.text)),
    // The seed's body field picks the adapter whatever the model field says.
    openai().completions.create({ model: 'stories', prompt: PROMPT, max_tokens: TOKENS, temperature: 0, adapter: 'agent-b' }),
  ]);
  assert.equal(a, want.a);
  assert.equal(b, want.b);
  assert.equal(none, want.base);
  assert.equal(viaField.choices[0].text, want.b);
});

test('the prompt cache never crosses adapters', skip, async () => {
  const body = (model) => ({ model, prompt: 'Lily had a big red ball and', max_tokens: 4, temperature: 0 });
  const first = await openai().completions.create(body('agent-a'));
  const again = await openai().completions.create(body('agent-a'));
  const other = await openai().completions.create(body('agent-b'));
  assert.equal(again.usage.prompt_tokens_details.cached_tokens, first.usage.prompt_tokens - 1);
  // Under agent-b only the BOS token may come from the cache (earlier agent-b requests start with it too).
  assert.ok(other.usage.prompt_tokens_details.cached_tokens <= 1, JSON.stringify(other.usage));
});

test('adapters are listed; an unknown one is a 400 in each API\'s shape', skip, async () => {
  const ids = (await openai().models.list()).data.map((m) => m.id);
  assert.deepEqual(ids.slice(1), ['agent-a', 'agent-b']);
  const list = await (await fetch(server.base + '/v1/adapters')).json();
  assert.deepEqual(list.data.map((a) => [a.id, a.format]), [['agent-a', 'mlx-lm'], ['agent-b', 'mlx-lm']]);
  assert.match(list.data[0].summary, /10 modules, rank 4, scale 2/);
  const r = await fetch(server.base + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: PROMPT, max_tokens: 2, adapters: 'agent-a+nope' }) });
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error.message, "unknown adapter 'nope' (mounted: agent-a, agent-b)");
  const m = await fetch(server.base + '/v1/messages', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'stories', adapter: 'zzz', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] }) });
  assert.equal(m.status, 400);
  const mj = await m.json();
  assert.deepEqual([mj.type, mj.error.type], ['error', 'invalid_request_error']);
  // Stacked: both adapters at once, a valid set of its own.
  const both = await openai().completions.create({ model: 'x', prompt: PROMPT, max_tokens: 4, adapters: 'agent-a+agent-b' });
  assert.equal(both.usage.completion_tokens, 4);
});

test('POST /v1/adapters mounts one at run time; bad ones are 400/404 and the server keeps serving', skip, async () => {
  const post = (body) => fetch(server.base + '/v1/adapters', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body) });
  const r = await post({ name: 'agent-c', path: want.cDir });
  assert.equal(r.status, 200);
  const j = await r.json();
  assert.deepEqual([j.id, j.object, j.format], ['agent-c', 'adapter', 'mlx-lm']);
  const c = await openai().completions.create({ model: 'agent-c', prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
  assert.equal(c.choices[0].text, want.c);
  const dup = await post({ name: 'agent-c', path: want.cDir });
  assert.equal(dup.status, 400);
  assert.match((await dup.json()).error.message, /already mounted/);
  const missing = await post({ name: 'agent-d', path: path.join(dir, 'nowhere') });
  assert.equal(missing.status, 404);
  const noPath = await post({ name: 'agent-d' });
  assert.equal(noPath.status, 400);
  // Still serving, and the earlier adapters are unchanged.
  const a = await openai().completions.create({ model: 'agent-a', prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
  assert.equal(a.choices[0].text, want.a);
});

test('DELETE /v1/adapters/NAME unmounts one: 409 while a request uses it, 404 unknown; the name is free again', skip, async () => {
  const del = (name) => fetch(server.base + '/v1/adapters/' + name, { method: 'DELETE' });
  // Six long streamed requests on agent-c hold it (four running, two queued: stories260K is fast).
  const streams = await Promise.all([...Array(6).keys()].map(() =>
    openai().completions.create({ model: 'agent-c', prompt: PROMPT, max_tokens: 480, temperature: 0, stream: true })));
  await streams[0][Symbol.asyncIterator]().next();
  const busy = await del('agent-c');
  assert.equal(busy.status, 409);
  assert.match((await busy.json()).error.message, /in use by \d queued or running request/);
  for (const st of streams) st.controller.abort();
  // Cancelled within a step; then the adapter can go.
  let r;
  for (let i = 0; i < 50; i++) {
    r = await del('agent-c');
    if (r.status !== 409) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { id: 'agent-c', object: 'adapter', deleted: true });
  assert.equal((await del('agent-c')).status, 404);
  const ids = (await openai().models.list()).data.map((m) => m.id);
  assert.deepEqual(ids.slice(1), ['agent-a', 'agent-b']);
  const named = await fetch(server.base + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: PROMPT, max_tokens: 2, adapter: 'agent-c' }) });
  assert.equal(named.status, 400);
  // Mounted again under the same name, it answers as before.
  const again = await fetch(server.base + '/v1/adapters', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'agent-c', path: want.cDir }) });
  assert.equal(again.status, 200);
  const c = await openai().completions.create({ model: 'agent-c', prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
  assert.equal(c.choices[0].text, want.c);
});

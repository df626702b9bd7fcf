// Security of `optiq serve` (issue 10): with --api-key every /v1 route (the APIs and the adapter admin routes)
// and /metrics need the key, as Bearer or x-api-key, and refuse others with 401 in the API's own shape; /health
// stays open. Oversized bodies are 413s in the API's shape; a huge header is refused; the server keeps serving.
// Binding beyond loopback without a key warns loudly.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { bin, needs, root, shared, startServer } from './harness.mjs';

const model = path.join(shared, 'models/stories260K/stories260K.gguf');
const skip = needs(model, bin);
let server;

before(async () => {
  if (skip.skip) return;
  server = await startServer(['--model', model, '--api-key', 'sekret', '--chat-template', path.join(root, 'tests/data/server/stories_template.jinja')]);
});
after(() => server?.stop());

const call = (p, opts = {}) => fetch(server.base + p, opts);
const json = { 'content-type': 'application/json' };
const chat = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
const msg = JSON.stringify({ model: 'm', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] });

test('without the key: 401 in each API\'s shape on the APIs, the admin routes and /metrics; /health open', skip, async () => {
  const o = await call('/v1/chat/completions', { method: 'POST', headers: json, body: chat });
  assert.equal(o.status, 401);
  assert.equal((await o.json()).error.type, 'authentication_error');
  const a = await call('/v1/messages', { method: 'POST', headers: { ...json, 'x-api-key': 'wrong' }, body: msg });
  assert.equal(a.status, 401);
  const aj = await a.json();
  assert.deepEqual([aj.type, aj.error.type], ['error', 'authentication_error']);
  for (const [m, p] of [['GET', '/v1/models'], ['GET', '/v1/adapters'], ['POST', '/v1/adapters'], ['DELETE', '/v1/adapters/x'], ['GET', '/metrics']])
    assert.equal((await call(p, { method: m, headers: json, body: m === 'POST' ? '{}' : undefined })).status, 401, `${m} ${p}`);
  assert.equal((await call('/health')).status, 200);
});

test('with the key, as Bearer or x-api-key, the same routes answer', skip, async () => {
  const o = await call('/v1/chat/completions', { method: 'POST', headers: { ...json, Authorization: 'Bearer sekret' }, body: chat });
  assert.equal(o.status, 200);
  const a = await call('/v1/messages', { method: 'POST', headers: { ...json, 'x-api-key': 'sekret' }, body: msg });
  assert.equal(a.status, 200);
  const m = await call('/metrics', { headers: { Authorization: 'Bearer sekret' } });
  assert.equal(m.status, 200);
  assert.match(await m.text(), /optiq_requests_running/);
});

test('an oversized body is a 413 in the API\'s shape; a huge header is refused; the server keeps serving', skip, async () => {
  const big = JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(40 << 20) }] });
  const r = await call('/v1/chat/completions', { method: 'POST', headers: { ...json, Authorization: 'Bearer sekret' }, body: big })
    .catch((e) => ({ status: 'reset', e }));
  if (r.status !== 'reset') {  // the server may answer before reading it all, or close the connection
    assert.equal(r.status, 413);
    assert.equal((await r.json()).error.type, 'invalid_request_error');
  }
  const status = await new Promise((resolve) => {
    const u = new URL(server.base);
    const s = net.connect(Number(u.port), u.hostname, () => s.write(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'y'.repeat(1 << 17)}\r\n\r\n`));
    let data = '';
    s.on('data', (d) => { data += d; });
    s.on('close', () => resolve(/^HTTP\/1\.1 (\d+)/.exec(data)?.[1] ?? 'closed'));
    s.on('error', () => resolve('closed'));
  });
  assert.notEqual(status, '200', 'a 128 KiB header line is not accepted');
  const ok = await call('/v1/chat/completions', { method: 'POST', headers: { ...json, Authorization: 'Bearer sekret' }, body: chat });
  assert.equal(ok.status, 200);
});

test('binding beyond loopback without a key warns', skip, async () => {
  const s = await startServer(['--model', model, '--host', '0.0.0.0']);
  try {
    assert.match(s.log(), /binding 0\.0\.0\.0 without --api-key: anyone who can reach this address can use the model/);
  } finally {
    s.stop();
  }
});

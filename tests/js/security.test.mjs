// Security of `optiq serve` (issue 10): with --api-key every /v1 route (the APIs and the adapter admin routes)
// and /metrics need the key, as Bearer or x-api-key, and refuse others with 401 in the API's own shape; /health
// stays open. Oversized bodies are 413s and oversized headers 431s in the API's shape; a client that sends its
// request too slowly gets a 408 after --timeout and cannot hold the server's workers; the server keeps serving.
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

// Sends `chunks` over a raw connection to `base`, `gapMs` apart (stopping once the server closes), and resolves
// with the first answer's status and JSON body, and how long the connection lasted.
function rawRequest(base, chunks, gapMs = 0) {
  const u = new URL(base);
  const t0 = Date.now();
  return new Promise((resolve) => {
    const s = net.connect(Number(u.port), u.hostname, async () => {
      for (const c of chunks) {
        if (s.destroyed || s.writableEnded) break;
        s.write(c);
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
      }
    });
    let data = '';
    s.on('data', (d) => { data += d; });
    s.on('error', () => {});
    s.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(data)?.[1] ?? 0);
      const body = data.slice(data.indexOf('\r\n\r\n') + 4);
      let json;
      try { json = JSON.parse(body); } catch { json = undefined; }
      resolve({ status, json, data, ms: Date.now() - t0, closeHeader: /\r\nConnection: close\r\n/i.test(data) });
    });
  });
}
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
  const line = await rawRequest(server.base, [`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'y'.repeat(1 << 17)}\r\n\r\n`]);
  assert.equal(line.status, 431, 'a 128 KiB header line is refused');
  const many = await rawRequest(server.base, [`POST /v1/messages HTTP/1.1\r\nHost: x\r\n${'X-A: b\r\n'.repeat(10000)}\r\n`]);
  assert.equal(many.status, 431, '10,000 short header lines are refused too');
  assert.deepEqual(many.json, { type: 'error', error: { type: 'invalid_request_error', message: 'request headers are larger than 64 KiB' } });
  // A line of "\r\r\n" looks blank to a careless counter but does not end the headers: still counted.
  const sneaky = await rawRequest(server.base, [`GET /health HTTP/1.1\r\nHost: x\r\n\r\r\n${'X-A: b\r\n'.repeat(10000)}\r\n`]);
  assert.equal(sneaky.status, 431);
  // A chunked body has no length for httplib to check: the 32 MiB limit still holds, in the API's shape.
  const mb = 'x'.repeat(1 << 20);
  const chunked = await rawRequest(server.base, ['POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekret\r\n' +
    'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n', ...Array(40).fill(`100000\r\n${mb}\r\n`), '0\r\n\r\n']);
  assert.equal(chunked.status, 413);
  assert.deepEqual(chunked.json.error, { message: 'request body is too large', type: 'invalid_request_error', param: null, code: null });
  const ok = await call('/v1/chat/completions', { method: 'POST', headers: { ...json, Authorization: 'Bearer sekret' }, body: chat });
  assert.equal(ok.status, 200);
});

test('binding beyond loopback without a key warns; SIGTERM right after start stops the server', skip, async () => {
  const s = await startServer(['--model', model, '--host', '0.0.0.0']);
  try {
    assert.match(s.log(), /binding 0\.0\.0\.0 without --api-key: anyone who can reach this address can use the model/);
  } finally {
    s.stop();
  }
  // The signal comes as soon as the log says "listening", before the accept loop may have started (it once
  // went unheeded there, and the server ran on).
  const end = await Promise.race([s.exited, new Promise((r) => setTimeout(() => r('still running'), 20000).unref())]);
  assert.deepEqual(end, { code: 0, signal: null });
});

test('a client too slow to send its request gets a 408 after --timeout, in the API\'s shape, and the connection closes', skip, async () => {
  const s = await startServer(['--model', model, '--timeout', '2', '--chat-template', path.join(root, 'tests/data/server/stories_template.jinja')]);
  try {
    // Headers a line every 300 ms (each line resets a per-read timeout; the whole-request deadline still ends it).
    const headers = await rawRequest(s.base, ['POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n', ...Array(40).fill('X-A: b\r\n')], 300);
    assert.equal(headers.status, 408);
    assert.deepEqual(headers.json, { error: { message: 'the request did not arrive within 2 s (--timeout)', type: 'invalid_request_error', param: null, code: null } });
    assert.ok(headers.closeHeader, 'the answer says Connection: close');
    assert.ok(headers.ms < 40 * 300, `closed by the server (${headers.ms} ms), not by the client running out of lines`);
    // A body a byte every 300 ms.
    const body = await rawRequest(s.base, ['POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a"', ...Array(40).fill(' ')], 300);
    assert.equal(body.status, 408);
    assert.deepEqual(body.json, { type: 'error', error: { type: 'invalid_request_error', message: 'the request did not arrive within 2 s (--timeout)' } });
    const ok = await fetch(s.base + '/v1/chat/completions', { method: 'POST', headers: json, body: chat });
    assert.equal(ok.status, 200);
    // A request line trickled a byte at a time: the same 408 (httplib alone would close without an answer).
    const line = await rawRequest(s.base, [...'POST /v1/chat/completions HTTP/1.1'], 300);
    assert.equal(line.status, 408);
    assert.equal(line.json.error.message, 'the request did not arrive within 2 s (--timeout)');
    // Requests pipelined in one write each get their answer, in order.
    const two = await rawRequest(s.base, ['GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n']);
    assert.deepEqual([...two.data.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1]), ['200', '200']);
    assert.match(two.data, /"object":"list"/);
    // A GET with a body (which nothing reads): answered, then the connection ends instead of reading the body as
    // the next request.
    const get = await rawRequest(s.base, ['GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /health HTTP/1.1\r\nHost: x\r\n\r\n']);
    assert.deepEqual([...get.data.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1]), ['200']);
  } finally {
    s.stop();
  }
});

test('slow clients on more connections than the server has workers do not keep others waiting', skip, async () => {
  const s = await startServer(['--model', model, '--timeout', '2', '--chat-template', path.join(root, 'tests/data/server/stories_template.jinja')]);
  try {
    // 80 connections (the server has 64 workers) each trickling a header line every 500 ms for 30 s.
    const trickle = 60, gap = 500;
    const slow = Array.from({ length: 80 }, () =>
      rawRequest(s.base, ['POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n', ...Array(trickle).fill('X-A: b\r\n')], gap));
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now();
    const ok = await fetch(s.base + '/v1/chat/completions', { method: 'POST', headers: json, body: chat, signal: AbortSignal.timeout(trickle * gap) });
    assert.equal(ok.status, 200);
    assert.ok(Date.now() - t0 < trickle * gap, 'answered while the slow clients were still trickling');
    const results = await Promise.all(slow);
    assert.deepEqual([...new Set(results.map((r) => r.status))], [408], 'every slow client got a 408');
  } finally {
    s.stop();
  }
});

// Replays the requests Claude Code sent (../shared/clients/claude-code-*.json, described in
// ../shared/research/clients.md) against `optiq serve` with plain fetch — the captured path, query, headers and
// body, unchanged — and checks what Claude Code needs of each answer: the exact Anthropic SSE event sequence for
// a streamed request, a full Message for the same request without streaming (its fallback), count_tokens.
//
// The model is stories260K with its context widened to 2048 positions (a temporary folder: links to the shared
// files and an edited config.json), rendered with tests/data/server/replay_template.jinja, which keeps the
// messages and the tool names but leaves out Claude Code's ~10k-token system prompt, so that each prompt
// (400-600 tokens) prefills in milliseconds on a CPU. The captures ask for max_tokens 4096-128000: the server
// clamps that to the context, so every generation ends within 2048 positions. One compute thread: a model this
// small gains nothing from two, and OpenMP barriers that spin against other processes (ctest -j, a build) slowed
// a two-thread server down several hundred times on a 2-core machine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { bin, editedModel, needs, root, shared, startServer } from './harness.mjs';

const modelDir = path.join(shared, 'models/stories260K-hf');
const clientsDir = path.join(shared, 'clients');
const skip = needs(modelDir, clientsDir, bin);
const CONTEXT = 2048;

const captures = skip.skip ? [] : readdirSync(clientsDir).filter((f) => /^claude-code-.*\.json$/.test(f)).sort()
  .map((f) => ({ file: f, ...JSON.parse(readFileSync(path.join(clientsDir, f), 'utf8')) }));
const isMessages = (c) => c.request.method === 'POST' && c.request.path === '/v1/messages';
const isCount = (c) => c.request.method === 'POST' && c.request.path === '/v1/messages/count_tokens';
if (!skip.skip && !captures.some(isMessages)) {
  const why = `no Claude Code /v1/messages captures in ${clientsDir}`;
  if (process.env.CI === 'true') throw new Error(why);
  skip.skip = why;
}

let replay, small, tmp;

before(async () => {
  if (skip.skip) return;
  tmp = editedModel(modelDir, { 'config.json': { max_position_embeddings: CONTEXT } });
  const oneThread = { OPTIQ_THREADS: '1' };
  replay = await startServer(['--model', tmp, '--chat-template', path.join(root, 'tests/data/server/replay_template.jinja')], oneThread);
  // The unmodified model (512 positions) with a template that keeps the system prompt: every Claude Code
  // request is over its context.
  small = await startServer(['--model', modelDir, '--chat-template', path.join(root, 'tests/data/server/stories_template.jinja')], oneThread);
});

after(() => {
  replay?.stop();
  small?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

// The captured request, sent as Claude Code sent it; `body` replaces the captured body when given.
function send(base, req, body = req.body) {
  const url = new URL(req.path, base);
  for (const [k, v] of Object.entries(req.query ?? {})) url.searchParams.set(k, v);
  const headers = Object.fromEntries(Object.entries(req.headers ?? {})
    .filter(([k]) => !['content-length', 'host', 'connection', 'accept-encoding'].includes(k.toLowerCase())));
  return fetch(url, { method: req.method, headers, body: body == null ? undefined : JSON.stringify(body) });
}

// SSE text -> [{ event, data }]. Every frame with data must name its event (the SDK drops frames without).
function parseSse(text) {
  const frames = [];
  for (const raw of text.split('\n\n')) {
    const lines = raw.split('\n').filter((l) => l !== '' && !l.startsWith(':'));
    if (!lines.length) continue;
    const event = lines.find((l) => l.startsWith('event: '))?.slice(7);
    const data = lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
    assert.ok(event, `an SSE frame without an event: line: ${JSON.stringify(raw)}`);
    frames.push({ event, data: JSON.parse(data) });
  }
  return frames;
}

const STOP_REASONS = ['end_turn', 'max_tokens', 'tool_use', 'stop_sequence'];
const DELTA_FOR_BLOCK = { text: ['text_delta'], tool_use: ['input_json_delta'], thinking: ['thinking_delta', 'signature_delta'] };

function checkUsage(usage, where) {
  assert.equal(typeof usage, 'object', `${where}: usage is an object`);
  assert.ok(Number.isInteger(usage.output_tokens) && usage.output_tokens >= 0, `${where}: usage.output_tokens`);
}

// Walks the stream through Anthropic's grammar: message_start, then blocks (content_block_start, deltas,
// content_block_stop; indexes 0, 1, 2, ... in order, never interleaved), message_delta, message_stop; pings
// anywhere in between. Returns the message the stream describes.
function checkStream(frames, model) {
  let state = 'start', block = null;
  const message = { content: [] };
  for (const [i, { event, data }] of frames.entries()) {
    const at = `event ${i} (${event}) in state ${state}`;
    assert.equal(data.type, event, `${at}: data.type matches the event name`);
    assert.notEqual(event, 'error', `${at}: ${JSON.stringify(data)}`);
    if (event === 'ping' && state !== 'start' && state !== 'end') continue;
    if (state === 'start') {
      assert.equal(event, 'message_start', at);
      const m = data.message;
      assert.equal(m.type, 'message');
      assert.equal(m.role, 'assistant');
      assert.equal(m.model, model);
      assert.deepEqual(m.content, []);
      assert.match(m.id, /^msg_/);
      checkUsage(m.usage, 'message_start');
      // Claude Code marks cache_control breakpoints: the prompt through the last one is reported as cache
      // creation (or read), input_tokens is only what follows it.
      assert.ok(Number.isInteger(m.usage.input_tokens) && m.usage.input_tokens >= 0, 'message_start: usage.input_tokens');
      assert.ok(m.usage.cache_creation_input_tokens + m.usage.cache_read_input_tokens > 0, 'message_start: cache_control prefix');
      message.input_tokens = m.usage.input_tokens + m.usage.cache_creation_input_tokens;
      message.cache_read = m.usage.cache_read_input_tokens;
      state = 'blocks';
    } else if (state === 'blocks' && event === 'content_block_start') {
      assert.equal(data.index, message.content.length, `${at}: blocks are indexed 0, 1, 2, ...`);
      const cb = data.content_block;
      assert.ok(cb.type in DELTA_FOR_BLOCK, `${at}: block type ${cb.type}`);
      block = cb.type === 'text' ? { type: 'text', text: cb.text }
        : cb.type === 'thinking' ? { type: 'thinking', thinking: cb.thinking }
        : { type: 'tool_use', name: cb.name, json: '' };
      if (cb.type === 'tool_use') {
        assert.match(cb.id, /./, `${at}: tool_use id`);
        assert.deepEqual(cb.input, {}, `${at}: tool_use input starts as {}`);
      }
      state = 'block';
    } else if (state === 'block' && event === 'content_block_delta') {
      assert.equal(data.index, message.content.length, `${at}: delta for the open block`);
      const d = data.delta;
      assert.ok(DELTA_FOR_BLOCK[block.type].includes(d.type), `${at}: ${d.type} in a ${block.type} block`);
      if (d.type === 'text_delta') block.text += d.text;
      else if (d.type === 'thinking_delta') block.thinking += d.thinking;
      else if (d.type === 'input_json_delta') block.json += d.partial_json;
    } else if (state === 'block' && event === 'content_block_stop') {
      assert.equal(data.index, message.content.length, `${at}: stop for the open block`);
      if (block.type === 'tool_use') {
        block.input = JSON.parse(block.json || '{}');
        delete block.json;
      }
      message.content.push(block);
      state = 'blocks';
    } else if (state === 'blocks' && event === 'message_delta') {
      assert.ok(STOP_REASONS.includes(data.delta.stop_reason), `${at}: stop_reason ${data.delta.stop_reason}`);
      checkUsage(data.usage, 'message_delta');
      message.stop_reason = data.delta.stop_reason;
      message.output_tokens = data.usage.output_tokens;
      state = 'delta';
    } else if (state === 'delta' && event === 'message_stop') {
      state = 'end';
    } else {
      assert.fail(`${at}: out of order`);
    }
  }
  assert.equal(state, 'end', 'the stream ends with message_stop');
  return message;
}

// Claude Code shows nothing for a message whose blocks are all empty.
function checkContent(content, stopReason, where) {
  assert.ok(Array.isArray(content) && content.length > 0, `${where}: non-empty content`);
  assert.ok(content.some((b) => (b.type === 'text' && b.text !== '') || b.type === 'tool_use'), `${where}: some text or a tool call`);
  assert.equal(stopReason === 'tool_use', content.some((b) => b.type === 'tool_use'), `${where}: stop_reason tool_use iff a tool_use block`);
}

// The comparable part of a block (tool-call ids are random).
const comparable = (b) => (b.type === 'text' ? { type: 'text', text: b.text }
  : b.type === 'thinking' ? { type: 'thinking', thinking: b.thinking } : { type: 'tool_use', name: b.name, input: b.input });

for (const c of captures.filter(isMessages)) {
  test(`Claude Code replay ${c.file}: stream, non-stream fallback, count_tokens agree`, skip, async () => {
    const req = c.request;
    assert.ok(Array.isArray(req.body.tools) && req.body.tools.length > 0, 'the capture sends tools');

    const sr = await send(replay.base, req, { ...req.body, stream: true });
    const sseText = await sr.text();
    assert.equal(sr.status, 200, sseText.slice(0, 500));
    assert.match(sr.headers.get('content-type'), /^text\/event-stream/);
    const streamed = checkStream(parseSse(sseText), req.body.model);
    checkContent(streamed.content, streamed.stop_reason, 'stream');
    // max_tokens (32000-128000) was clamped to the context instead of rejected.
    assert.ok(streamed.input_tokens + streamed.cache_read + streamed.output_tokens <= CONTEXT, 'generation stays within the context');

    const nr = await send(replay.base, req, { ...req.body, stream: false });
    const msg = await nr.json();
    assert.equal(nr.status, 200, JSON.stringify(msg));
    assert.match(nr.headers.get('content-type'), /^application\/json/);
    assert.equal(msg.type, 'message');
    assert.equal(msg.role, 'assistant');
    assert.equal(msg.model, req.body.model);
    assert.ok(STOP_REASONS.includes(msg.stop_reason), `stop_reason ${msg.stop_reason}`);
    checkContent(msg.content, msg.stop_reason, 'non-stream');
    checkUsage(msg.usage, 'non-stream');
    // Greedy (Claude Code sends no temperature): the fallback answer is the streamed one.
    assert.deepEqual(msg.content.map(comparable), streamed.content.map(comparable));
    assert.equal(msg.stop_reason, streamed.stop_reason);
    // (The fallback repeats the prompt, so more of it may come from the prompt cache: compare totals.)
    assert.deepEqual([msg.usage.input_tokens + msg.usage.cache_read_input_tokens + msg.usage.cache_creation_input_tokens,
      msg.usage.output_tokens],
      [streamed.input_tokens + streamed.cache_read, streamed.output_tokens]);

    // /context counts the same prompt.
    const { stream, max_tokens, ...countBody } = req.body;
    const cr = await send(replay.base, { ...req, path: '/v1/messages/count_tokens' }, countBody);
    const count = await cr.json();
    assert.equal(cr.status, 200, JSON.stringify(count));
    assert.equal(count.input_tokens, streamed.input_tokens + streamed.cache_read);
  });
}

test('Claude Code count_tokens captures', skip, async () => {
  const counts = {};
  for (const c of captures.filter(isCount)) {
    const r = await send(replay.base, c.request);
    const j = await r.json();
    assert.equal(r.status, 200, `${c.file}: ${JSON.stringify(j)}`);
    assert.match(r.headers.get('content-type'), /^application\/json/);
    assert.ok(Number.isInteger(j.input_tokens) && j.input_tokens > 0, `${c.file}: input_tokens ${j.input_tokens}`);
    counts[c.file] = j.input_tokens;
  }
  // The tool definitions reach the template (replay_template.jinja prints their names).
  const withTools = captures.find((c) => isCount(c) && c.request.body.tools?.length);
  const without = captures.find((c) => isCount(c) && !c.request.body.tools?.length);
  if (withTools && without) assert.ok(counts[withTools.file] > counts[without.file], JSON.stringify(counts));
});

test('Claude Code discovery and probe requests are answered', skip, async () => {
  for (const c of captures.filter((c) => !isMessages(c) && !isCount(c))) {
    const r = await send(replay.base, c.request);
    await r.arrayBuffer();
    assert.ok(r.status < 500, `${c.file}: ${c.request.method} ${c.request.path} -> ${r.status}`);
    if (c.request.method === 'GET' && c.request.path === '/v1/models') {
      assert.equal(r.status, 200);
      const j = await (await send(replay.base, c.request)).json();
      assert.ok(Array.isArray(j.data) && j.data.length > 0 && j.data.every((m) => typeof m.id === 'string'), JSON.stringify(j));
    }
  }
});

test('a Claude Code request over the context: 400 "prompt is too long: N tokens > M maximum"', skip, async () => {
  const c = captures.find(isMessages);
  const { stream, max_tokens, ...countBody } = c.request.body;
  const n = (await (await send(small.base, { ...c.request, path: '/v1/messages/count_tokens' }, countBody)).json()).input_tokens;
  assert.ok(n > 511, `the prompt (${n} tokens) is over the 512-position context`);
  for (const s of [true, false]) {
    const r = await send(small.base, c.request, { ...c.request.body, stream: s });
    const j = await r.json();
    assert.equal(r.status, 400, JSON.stringify(j));
    assert.equal(j.type, 'error');
    assert.equal(j.error.type, 'invalid_request_error');
    // Claude Code parses these numbers (clients.md §5).
    assert.equal(j.error.message, `prompt is too long: ${n} tokens > 511 maximum`);
  }
});

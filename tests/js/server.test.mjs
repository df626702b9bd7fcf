// Drives `optiq serve` with the official OpenAI and Anthropic SDKs on a loopback port. The model is
// stories260K (../shared): a real trained Llama whose greedy continuations llama.cpp recorded, so the
// text of every greedy request is known exactly.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { bin, needs, root, shared, startServer } from './harness.mjs';

const modelDir = path.join(shared, 'models/stories260K-hf');
const skip = needs(modelDir, bin);
const missing = skip.skip;

const golden = missing ? null : JSON.parse(readFileSync(path.join(shared, 'golden/stories260K.json'), 'utf8'));
const once = golden?.cases.find((c) => c.prompt === 'Once upon a time');

let server, base;

before(async () => {
  if (missing) return;
  server = await startServer(['--model', modelDir, '--max-concurrency', '2',
    '--chat-template', path.join(root, 'tests/data/server/stories_template.jinja')]);
  base = server.base;
});

after(() => server?.stop());

const openai = () => new OpenAI({ baseURL: base + '/v1', apiKey: 'not-used', maxRetries: 0 });
const anthropic = () => new Anthropic({ baseURL: base, apiKey: 'not-used', maxRetries: 0 });

test('OpenAI completions: greedy text equals llama.cpp', skip, async () => {
  const r = await openai().completions.create({ model: 'stories', prompt: once.prompt, max_tokens: 64, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.model, 'stories');
  assert.equal(r.choices[0].text, once.greedy_text);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.deepEqual([r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens], [5, 64, 69]);
});

test('OpenAI chat, streamed with usage: same text, role first, finish_reason last', skip, async () => {
  const stream = await openai().chat.completions.create({
    model: 'local', messages: [{ role: 'user', content: once.prompt }], max_tokens: 64, stream: true,
    stream_options: { include_usage: true },
  });
  let text = '', chunks = [], usage = null;
  for await (const c of stream) {
    chunks.push(c);
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) text += ch.delta?.content ?? '';
  }
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const last = chunks.filter((c) => c.choices.length).at(-1);
  assert.equal(last.choices[0].finish_reason, 'length');
  assert.equal(text, once.greedy_text);
  assert.equal(usage.completion_tokens, 64);
});

test('OpenAI chat: a stop string ends the text before it', skip, async () => {
  const r = await openai().chat.completions.create({
    model: 'local', messages: [{ role: 'user', content: once.prompt }], max_tokens: 64, stop: ['Lily'],
  });
  assert.equal(r.choices[0].message.content, ', there was a little girl named ');
  assert.equal(r.choices[0].finish_reason, 'stop');
});

// response_format json_object constrains sampling to JSON (stories260K: '"' is token 436, ',' 432, and '}'
// the byte token <0x7D> = 128). Biased towards quotes and the closing brace, the greedy run writes one whole
// object and ends there with finish_reason "stop"; streamed, the deltas join to the same text.
test('OpenAI chat: response_format json_object gives a JSON object', skip, async () => {
  const req = {
    model: 'local', messages: [{ role: 'user', content: once.prompt }], max_tokens: 300, temperature: 0,
    response_format: { type: 'json_object' }, logit_bias: { 436: 5, 128: 5, 432: -100 },
  };
  const r = await openai().chat.completions.create(req);
  const content = r.choices[0].message.content;
  assert.equal(r.choices[0].finish_reason, 'stop');
  const obj = JSON.parse(content);
  assert.equal(typeof obj, 'object');
  assert.equal(Object.keys(obj).length, 1);
  let text = '';
  for await (const c of await openai().chat.completions.create({ ...req, stream: true }))
    for (const ch of c.choices) text += ch.delta?.content ?? '';
  assert.equal(text, content);
  // Without the constraint the same request is a story, not JSON.
  const plain = await openai().chat.completions.create({ ...req, response_format: { type: 'text' } });
  assert.throws(() => JSON.parse(plain.choices[0].message.content));
});

test('Anthropic messages: exact text, stop_reason max_tokens, usage', skip, async () => {
  const m = await anthropic().messages.create({
    model: 'claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user', content: once.prompt }],
  });
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.equal(m.model, 'claude-sonnet-4-5');
  assert.equal(m.content[0].type, 'text');
  assert.equal(m.content[0].text, once.greedy_text);
  assert.equal(m.stop_reason, 'max_tokens');
  // The prompt's 5 tokens: those read from the prompt cache (earlier tests sent the same prompt) and the rest.
  assert.equal(m.usage.input_tokens + m.usage.cache_read_input_tokens, 5);
  assert.equal(m.usage.cache_creation_input_tokens, 0);
  assert.equal(m.usage.output_tokens, 64);
});

// The prompt cache: a repeated conversation reuses the KV of the previous one (all but the last prompt
// token), reports it in each API's usage, and answers exactly the same.
test('a repeated prompt is read from the prompt cache and reported in usage', skip, async () => {
  const messages = [{ role: 'user', content: 'Lily and Ben went to the park.' }];
  const a = await openai().chat.completions.create({ model: 'local', messages, max_tokens: 16 });
  const b = await openai().chat.completions.create({ model: 'local', messages, max_tokens: 16 });
  assert.equal(b.choices[0].message.content, a.choices[0].message.content);
  assert.equal(b.usage.prompt_tokens, a.usage.prompt_tokens);
  assert.equal(b.usage.prompt_tokens_details.cached_tokens, b.usage.prompt_tokens - 1);
  const s = anthropic().messages.stream({ model: 'local', max_tokens: 16, messages });
  let start;
  s.on('streamEvent', (e) => { if (e.type === 'message_start') start = e.message.usage; });
  const m = await s.finalMessage();
  assert.equal(m.content[0].text, a.choices[0].message.content);
  assert.deepEqual([start.input_tokens, start.cache_read_input_tokens], [1, a.usage.prompt_tokens - 1]);
  assert.deepEqual([m.usage.input_tokens, m.usage.cache_read_input_tokens], [1, a.usage.prompt_tokens - 1]);
});

// cache_control: the prompt through the last breakpoint (here the system prompt) is reported as written to the
// cache the first time and read from it the next; input_tokens counts the rest.
test('cache_control breakpoints are reported as cache creation, then as cache reads', skip, async () => {
  const sysText = 'Tom had a red ball and a big dog named Max.';
  const system = [{ type: 'text', text: sysText, cache_control: { type: 'ephemeral' } }];
  const messages = [{ role: 'user', content: 'One day they went out to play.' }];
  const total = (await anthropic().messages.countTokens({ model: 'local', system, messages })).input_tokens;
  const through = (await anthropic().messages.countTokens({ model: 'local', system: sysText,
    messages: [{ role: 'user', content: '' }] })).input_tokens;
  assert.ok(through > 5 && through < total, `${through} of ${total}`);
  const a = await anthropic().messages.create({ model: 'local', max_tokens: 8, system, messages });
  // Earlier prompts share at most the BOS token with this one.
  const read = a.usage.cache_read_input_tokens;
  assert.ok(read <= 1, `read ${read}`);
  assert.deepEqual([a.usage.cache_creation_input_tokens, a.usage.input_tokens], [through - read, total - through]);
  const b = await anthropic().messages.create({ model: 'local', max_tokens: 8, system, messages });
  assert.deepEqual([b.usage.cache_read_input_tokens, b.usage.cache_creation_input_tokens, b.usage.input_tokens],
    [total - 1, 0, 1]);
  assert.equal(b.content[0].text, a.content[0].text);
  // Without a breakpoint nothing is reported as written.
  const c = await anthropic().messages.create({ model: 'local', max_tokens: 8, system: sysText, messages });
  assert.equal(c.usage.cache_creation_input_tokens, 0);
});

test('Anthropic stream helper: events in order, final message', skip, async () => {
  const s = anthropic().messages.stream({
    model: 'local', max_tokens: 20, messages: [{ role: 'user', content: once.prompt }], stop_sequences: ['girl'],
  });
  const types = [];
  s.on('streamEvent', (e) => types.push(e.type));
  const m = await s.finalMessage();
  assert.equal(m.content[0].text, ', there was a little ');
  assert.equal(m.stop_reason, 'stop_sequence');
  assert.equal(m.stop_sequence, 'girl');
  assert.equal(types[0], 'message_start');
  assert.ok(types.includes('content_block_start') && types.includes('content_block_stop'));
  assert.deepEqual(types.slice(-2), ['message_delta', 'message_stop']);
});

test('Anthropic count_tokens', skip, async () => {
  const r = await anthropic().messages.countTokens({ model: 'local', messages: [{ role: 'user', content: once.prompt }] });
  assert.equal(r.input_tokens, 5);
});

test('models list serves both SDKs', skip, async () => {
  const page = await openai().models.list();
  assert.equal(page.data.length, 1);
  const a = await anthropic().models.list();
  assert.equal(a.data.length, 1);
});

test('bad requests get each API\'s error shape and the server keeps serving', skip, async () => {
  const post = (p, body, headers = {}) => fetch(base + p, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  let r = await post('/v1/chat/completions', '{not json');
  assert.equal(r.status, 400);
  let j = await r.json();
  assert.equal(j.error.type, 'invalid_request_error');
  r = await post('/v1/messages', JSON.stringify({ model: 'x', messages: [{ role: 'user', content: 'hi' }] }));
  assert.equal(r.status, 400);
  j = await r.json();
  assert.equal(j.type, 'error');
  assert.equal(j.error.type, 'invalid_request_error');
  assert.match(j.error.message, /max_tokens/);
  r = await post('/v1/chat/completions', JSON.stringify({ model: 'x', messages: [], max_tokens: 5 }));
  assert.equal(r.status, 400);
  r = await post('/v1/chat/completions', JSON.stringify({ model: 'x', messages: [{ role: 'user', content: 'hi' }], n: 3 }));
  assert.equal(r.status, 400);
  r = await fetch(base + '/v1/nothing');
  assert.equal(r.status, 404);
  r = await post('/v1/messages?beta=true', JSON.stringify({ model: 'x', max_tokens: 3, messages: [{ role: 'user', content: 'hi' }] }));
  assert.equal(r.status, 200);
  // Over the body limit (32 MiB): 413 in each API's shape.
  const huge = 'a'.repeat(33 << 20);
  r = await post('/v1/chat/completions', huge);
  assert.equal(r.status, 413);
  assert.equal((await r.json()).error.type, 'invalid_request_error');
  r = await post('/v1/messages', huge);
  assert.equal(r.status, 413);
  assert.equal((await r.json()).error.type, 'request_too_large');
  const h = await fetch(base + '/health');
  assert.equal(h.status, 200);
});

test('a JSON body sent as a form (curl -d without a content type) is read as JSON, whatever its size', skip, async () => {
  // 20 KB: more than the 8 KB httplib allows form bodies.
  const body = JSON.stringify({ model: 'x', prompt: once.prompt, max_tokens: 2, user: 'u'.repeat(20000) });
  const r = await fetch(base + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
  assert.equal(r.status, 200);
  assert.equal((await r.json()).usage.completion_tokens, 2);
});

test('a client that disconnects mid-stream does not stop the server', skip, async () => {
  const ac = new AbortController();
  const r = await fetch(base + '/v1/chat/completions', {
    method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'x', messages: [{ role: 'user', content: once.prompt }], max_tokens: 400, stream: true }),
  });
  const reader = r.body.getReader();
  await reader.read();
  ac.abort();
  const again = await openai().completions.create({ model: 'stories', prompt: once.prompt, max_tokens: 8 });
  assert.equal(again.choices[0].text, once.greedy_text.slice(0, again.choices[0].text.length));
});

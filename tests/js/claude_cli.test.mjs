// Runs the real Claude Code CLI (`@anthropic-ai/claude-code` from package.json, a native binary) in print mode
// against `optiq serve`, as a user would:
//   ANTHROPIC_BASE_URL=http://127.0.0.1:PORT ANTHROPIC_API_KEY=not-used claude -p "hi"
// and checks that it exits 0 and prints exactly the text the server generated. A recording proxy between the two
// keeps every exchange, so each check can name what Claude Code sent and what it got back.
//
// The model is stories260K (HF folder) with BOS added to its end-of-generation tokens: llama2.c's stories models
// end a story with BOS, never with EOS, so without it every answer runs to the context limit, Claude Code reads
// stop_reason "max_tokens" as truncation and asks for a continuation that no longer fits. The template
// (tests/data/server/last_line_template.jinja) renders BOS + the last line of the last user message, i.e. "hi",
// leaving out Claude Code's system prompt, tools and context reminders (which name the working directory, the
// date and the git status), so the answer is the model's greedy continuation of "hi", whatever the machine.
// `optiq generate` on the same folder gives the reference text. Claude Code runs with a throwaway HOME as its
// working directory, with the variables that keep it from any traffic but the one request (clients.md §2).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { bin, claudeBin, editedModel, needs, root, shared, startServer } from './harness.mjs';

const modelDir = path.join(shared, 'models/stories260K-hf');
const skip = needs(modelDir, bin, claudeBin);
const CONTEXT = 512; // stories260K's max_position_embeddings
const PROMPT_TOKENS = 2 + 1; // BOS, "h", "i"

let model, server, proxy, reference;

before(async () => {
  if (skip.skip) return;
  model = editedModel(modelDir, { 'generation_config.json': { eos_token_id: [2, 1] } });
  // `optiq generate` prints the text and a newline, and its token count and finish reason on stderr.
  const gen = spawnSync(bin, ['generate', model, '--prompt', 'hi', '--max-tokens', String(CONTEXT)],
    { encoding: 'utf8', env: { ...process.env, OPTIQ_THREADS: '1' } });
  assert.equal(gen.status, 0, gen.stderr);
  const stats = /generation: (\d+) tokens.*\(finish: stop\)/.exec(gen.stderr);
  assert.ok(stats && gen.stdout.length > 1 && gen.stdout.endsWith('\n'), `"hi" ends with BOS: ${gen.stderr}`);
  reference = { text: gen.stdout.slice(0, -1), tokens: Number(stats[1]) };
  server = await startServer(['--model', model, '--chat-template', path.join(root, 'tests/data/server/last_line_template.jinja')],
    { OPTIQ_THREADS: '1' });
  proxy = await recordingProxy(server.base);
});

after(() => {
  proxy?.close();
  server?.stop();
  if (model) rmSync(model, { recursive: true, force: true });
});

// A loopback HTTP proxy to `target` that passes bytes through unchanged and records each exchange:
// { method, url, status, body (parsed JSON), response (decoded text), done (resolves when the response ended) }.
function recordingProxy(target) {
  const exchanges = [];
  const proxyServer = http.createServer((req, res) => {
    const sent = [];
    req.on('data', (c) => sent.push(c));
    req.on('end', () => {
      const body = Buffer.concat(sent);
      const ex = { method: req.method, url: req.url, body: body.length ? JSON.parse(body) : null };
      let ended;
      ex.done = new Promise((resolve) => { ended = resolve; });
      exchanges.push(ex);
      const up = http.request(new URL(req.url, target), { method: req.method, headers: { ...req.headers, host: new URL(target).host } }, (ur) => {
        ex.status = ur.statusCode;
        res.writeHead(ur.statusCode, ur.headers);
        const got = [];
        ur.on('data', (c) => { got.push(c); res.write(c); });
        ur.on('end', () => {
          ex.response = decode(Buffer.concat(got), ur.headers['content-encoding']);
          ended();
          res.end();
        });
      });
      up.on('error', (e) => { ex.response = `proxy: ${e.message}`; ended(); res.destroy(e); });
      up.end(body);
    });
  });
  return new Promise((resolve) => proxyServer.listen(0, '127.0.0.1', () => resolve({
    base: `http://127.0.0.1:${proxyServer.address().port}`,
    exchanges,
    close: () => proxyServer.close(),
  })));
}

function decode(buf, encoding) {
  if (encoding === 'br') return zlib.brotliDecompressSync(buf).toString();
  if (encoding === 'gzip') return zlib.gunzipSync(buf).toString();
  if (encoding === 'deflate') return zlib.inflateSync(buf).toString();
  return buf.toString();
}

// Runs `claude ARGS` against the proxy with a fresh HOME as working directory; resolves with its exit code,
// output and the exchanges of this run.
async function runClaude(args) {
  const home = mkdtempSync(path.join(os.tmpdir(), 'optiq-claude-home-'));
  // Nothing of the caller's own Claude Code set-up or proxies may reach the run.
  const env = Object.fromEntries(Object.entries(process.env)
    .filter(([k]) => !/^(ANTHROPIC_|CLAUDE|HTTPS?_PROXY$|ALL_PROXY$)/i.test(k)));
  Object.assign(env, {
    HOME: home,
    ANTHROPIC_BASE_URL: proxy.base,
    ANTHROPIC_API_KEY: 'not-used',
    DISABLE_TELEMETRY: '1',
    DISABLE_ERROR_REPORTING: '1',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    CLAUDE_CODE_MAX_RETRIES: '1', // a server error fails the run in seconds, not after minutes of back-off
  });
  const first = proxy.exchanges.length;
  try {
    const child = spawn(claudeBin, args, { cwd: home, env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 120000 });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const code = await new Promise((resolve, reject) => { child.on('error', reject); child.on('close', (c, sig) => resolve(c ?? sig)); });
    const exchanges = proxy.exchanges.slice(first);
    await Promise.all(exchanges.map((e) => e.done));
    return { code, stdout, stderr, exchanges };
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

// What one streamed /v1/messages answer said: model, text, stop_reason, usage.
function readStream(sse) {
  const out = { text: '', events: [] };
  for (const frame of sse.split('\n\n')) {
    const data = frame.split('\n').find((l) => l.startsWith('data: '));
    if (!data) continue;
    const d = JSON.parse(data.slice(6));
    out.events.push(d.type);
    if (d.type === 'message_start') {
      out.model = d.message.model;
      out.input_tokens = d.message.usage.input_tokens;
      out.cache_creation = d.message.usage.cache_creation_input_tokens;
      out.cache_read = d.message.usage.cache_read_input_tokens;
    }
    if (d.type === 'content_block_delta' && d.delta.type === 'text_delta') out.text += d.delta.text;
    if (d.type === 'message_delta') { out.stop_reason = d.delta.stop_reason; out.output_tokens = d.usage.output_tokens; }
  }
  return out;
}

// The run made exactly one model call, answered 200 with a complete stream; returns what the stream said.
function theOneMessage(run, model, maxTokens) {
  const why = `exit ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}\nexchanges: ${JSON.stringify(run.exchanges.map(
    ({ method, url, status, response }) => ({ method, url, status, response: response?.slice(0, 2000) })), null, 1)}`;
  assert.equal(run.exchanges.length, 1, `one request, no retry or continuation\n${why}`);
  const [ex] = run.exchanges;
  assert.equal(`${ex.method} ${new URL(ex.url, 'http://x').pathname}`, 'POST /v1/messages', why);
  assert.equal(ex.status, 200, why);
  assert.equal(ex.body.stream, true);
  assert.equal(ex.body.model, model);
  assert.equal(ex.body.max_tokens, maxTokens);
  const m = readStream(ex.response);
  assert.equal(m.events.at(-1), 'message_stop', why);
  assert.equal(m.model, model, 'the requested model id is echoed');
  assert.equal(m.stop_reason, 'end_turn', why);
  // The prompt, split into tokens read from the prompt cache (earlier runs sent the same one), tokens computed
  // through Claude Code's last cache_control breakpoint, and the rest.
  assert.equal(m.input_tokens + m.cache_creation + m.cache_read, PROMPT_TOKENS);
  assert.ok(PROMPT_TOKENS + m.output_tokens <= CONTEXT, `max_tokens ${maxTokens} clamped to the context: ${JSON.stringify(m)}`);
  assert.equal(m.text, reference.text, 'the server answered the greedy continuation of "hi"');
  assert.equal(m.output_tokens, reference.tokens);
  assert.equal(run.code, 0, why);
  return m;
}

test('claude -p "hi" --model local-model: exit 0, prints the text the server generated', skip, async () => {
  const run = await runClaude(['-p', 'hi', '--model', 'local-model']);
  const m = theOneMessage(run, 'local-model', 32000);
  assert.equal(run.stdout, m.text + '\n');
});

test('claude -p "hi" with its default model (max_tokens 128000) --output-format json: result and usage are the server\'s', skip, async () => {
  const run = await runClaude(['-p', 'hi', '--output-format', 'json']);
  const m = theOneMessage(run, 'claude-opus-5-5', 128000);
  const r = JSON.parse(run.stdout);
  assert.equal(r.type, 'result');
  assert.equal(r.subtype, 'success');
  assert.equal(r.is_error, false);
  assert.equal(r.num_turns, 1);
  assert.equal(r.result, m.text);
  assert.equal(r.stop_reason, 'end_turn');
  assert.deepEqual([r.usage.input_tokens, r.usage.cache_creation_input_tokens, r.usage.cache_read_input_tokens, r.usage.output_tokens],
    [m.input_tokens, m.cache_creation, m.cache_read, m.output_tokens]);
  assert.deepEqual(Object.keys(r.modelUsage), ['claude-opus-5-5']);
});

test('claude -p "hi" --output-format stream-json: the assistant message is the server\'s', skip, async () => {
  const run = await runClaude(['-p', 'hi', '--model', 'local-model', '--output-format', 'stream-json', '--verbose']);
  const m = theOneMessage(run, 'local-model', 32000);
  const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines[0].type, 'system');
  assert.equal(lines[0].subtype, 'init');
  const assistant = lines.filter((l) => l.type === 'assistant');
  assert.equal(assistant.length, 1, run.stdout);
  assert.equal(assistant[0].message.model, 'local-model');
  assert.deepEqual(assistant[0].message.content, [{ type: 'text', text: m.text }]);
  const result = lines.at(-1);
  assert.equal(result.type, 'result');
  assert.equal(result.is_error, false);
  assert.equal(result.result, m.text);
});

// Hugging Face repo ids (issue 9) against a mock hub on 127.0.0.1 that answers as the hub does: /api/models/...
// for the revision's commit and file list; /resolve/ with ETag (git sha1) for small files and a redirect to a CDN
// URL with X-Linked-Etag (sha256) / X-Linked-Size for LFS files; X-Error-Code on errors. It serves stories260K
// (plus files optiq must not fetch), and variants: a connection cut mid-file, corrupted bytes, a gated repo, an
// adapter. Every run gets a fresh HF_HUB_CACHE; what `optiq download` leaves there is read back by `optiq generate`
// through the cache resolver, offline.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bin, needs, shared, startServer, writeRandomAdapter } from './harness.mjs';

const modelDir = path.join(shared, 'models/stories260K-hf');
const skip = needs(modelDir, bin);
const PROMPT = 'Once upon a time';

let dir, hub, base;
const log = [];  // { method, path, range, auth }
const repos = {};

const sha256 = (b) => createHash('sha256').update(b).digest('hex');
const gitSha1 = (b) => createHash('sha1').update(Buffer.concat([Buffer.from(`blob ${b.length}\0`), b])).digest('hex');

function addRepo(id, files, opts = {}) {
  const commit = createHash('sha1').update(id).digest('hex');
  repos[id] = { commit, files, lfs: new Set(Object.keys(files).filter((f) => /\.(safetensors|gguf|bin)$/.test(f))), ...opts };
}

function mockHub(req, res) {
  const url = new URL(req.url, 'http://x');
  log.push({ method: req.method, path: decodeURIComponent(url.pathname), range: req.headers.range, auth: req.headers.authorization });
  const fail = (status, code) => { res.writeHead(status, { 'X-Error-Code': code, 'Content-Type': 'application/json' }); res.end(`{"error":"${code}"}`); };
  let m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(decodeURIComponent(url.pathname));
  if (m) {
    const repo = repos[m[1]];
    if (!repo) return fail(404, 'RepoNotFound');
    if (m[2] !== 'main' && m[2] !== repo.commit) return fail(404, 'RevisionNotFound');
    res.writeHead(200, { 'Content-Type': 'application/json' });
    return res.end(JSON.stringify({ id: m[1], sha: repo.commit, siblings: Object.keys(repo.files).map((f) => ({ rfilename: f })) }));
  }
  m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(decodeURIComponent(url.pathname));
  if (m) {
    const repo = repos[m[1]];
    if (!repo) return fail(404, 'RepoNotFound');
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) return fail(req.headers.authorization ? 403 : 401, 'GatedRepo');
    if (m[2] !== repo.commit && m[2] !== 'main') return fail(404, 'RevisionNotFound');
    const body = repo.files[m[3]];
    if (!body) return fail(404, 'EntryNotFound');
    const common = { 'X-Repo-Commit': repo.commit };
    if (repo.lfs.has(m[3])) {
      const h = sha256(body);
      res.writeHead(302, { ...common, Location: `${base}/cdn/${m[1]}/${h}`, 'X-Linked-Etag': `"${h}"`, 'X-Linked-Size': String(body.length),
        ETag: '"not-the-content-hash"' });
      return res.end();
    }
    res.writeHead(200, { ...common, ETag: `"${gitSha1(body)}"`, 'Content-Length': body.length });
    return res.end(req.method === 'HEAD' ? undefined : body);
  }
  m = /^\/cdn\/([^/]+\/[^/]+)\/([0-9a-f]{64})$/.exec(url.pathname);
  if (m) {
    const repo = repos[m[1]];
    const name = Object.keys(repo.files).find((f) => sha256(repo.files[f]) === m[2]);
    let body = repo.files[name];
    if (repo.corrupt === name) { body = Buffer.from(body); body[body.length >> 1] ^= 0xff; }
    const r = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const from = r ? Number(r[1]) : 0;
    const part = body.subarray(from);
    res.writeHead(r ? 206 : 200, { 'Content-Length': part.length, ...(r ? { 'Content-Range': `bytes ${from}-${body.length - 1}/${body.length}` } : {}) });
    if (repo.cut?.[name] && !repo.cutDone) {  // the first transfer of this file dies half-way
      repo.cutDone = true;
      res.write(part.subarray(0, repo.cut[name]));
      return setTimeout(() => req.socket.destroy(), 50);
    }
    return res.end(part);
  }
  fail(404, 'NotFound');
}

// Runs optiq asynchronously: the mock hub lives in this process, so its event loop must keep turning.
function optiq(args, env = {}, cache) {
  const p = spawn(bin, args, { env: { ...process.env, HF_HUB_CACHE: cache, HF_ENDPOINT: base, HF_TOKEN: '', HF_HOME: path.join(dir, 'hf-home'),
    ...env } });
  let out = '', err = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { err += d; });
  return new Promise((resolve) => p.on('close', (code) => resolve({ code, out, err })));
}
const freshCache = () => mkdtempSync(path.join(dir, 'cache-'));
const fileGets = () => log.filter((e) => e.path.includes('/resolve/') || e.path.startsWith('/cdn/'));

before(async () => {
  if (skip.skip) return;
  dir = mkdtempSync(path.join(os.tmpdir(), 'optiq-hub-'));
  const model = {};
  for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json',
    'special_tokens_map.json']) model[f] = readFileSync(path.join(modelDir, f));
  const extra = { 'pytorch_model.bin': Buffer.alloc(4096, 7), 'README.md': Buffer.from('# stories\n'), 'onnx/model.onnx': Buffer.alloc(64, 1) };
  addRepo('org/stories', { ...model, ...extra });
  addRepo('org/cut', model, { cut: { 'model.safetensors': 300000 } });
  addRepo('org/corrupt', model, { corrupt: 'model.safetensors' });
  addRepo('org/gated', model, { token: 'hf_good' });
  // An mlx-lm adapter on q_proj and down_proj of every layer.
  const adapterDir = writeRandomAdapter(path.join(dir, 'adapter'), JSON.parse(model['config.json']), 11);
  addRepo('org/agent', { 'adapters.safetensors': readFileSync(path.join(adapterDir, 'adapters.safetensors')),
    'adapter_config.json': readFileSync(path.join(adapterDir, 'adapter_config.json')), 'README.md': Buffer.from('adapter') });
  hub = http.createServer(mockHub);
  await new Promise((resolve) => hub.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${hub.address().port}`;
});

after(() => {
  hub?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a download lays the cache out as huggingface_hub does, fetches only what optiq loads, and a second run fetches nothing', skip, async () => {
  const cache = freshCache();
  log.length = 0;
  const r = await optiq(['download', 'org/stories'], {}, cache);
  assert.equal(r.code, 0, r.err);
  const repoDir = path.join(cache, 'models--org--stories'), commit = repos['org/stories'].commit;
  const snap = path.join(repoDir, 'snapshots', commit);
  assert.equal(r.out.trim(), snap);
  assert.equal(readFileSync(path.join(repoDir, 'refs/main'), 'utf8'), commit);
  assert.equal(readlinkSync(path.join(snap, 'config.json')), `../../blobs/${gitSha1(repos['org/stories'].files['config.json'])}`);
  assert.equal(readlinkSync(path.join(snap, 'model.safetensors')), `../../blobs/${sha256(repos['org/stories'].files['model.safetensors'])}`);
  assert.deepEqual(readFileSync(path.join(snap, 'model.safetensors')), repos['org/stories'].files['model.safetensors']);
  assert.deepEqual(readdirSync(snap).sort(), ['config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json',
    'tokenizer.json', 'tokenizer_config.json']);
  assert.ok(!log.some((e) => /pytorch_model|README|onnx/.test(e.path)), JSON.stringify(log));
  assert.ok(!readdirSync(path.join(repoDir, 'blobs')).some((f) => f.endsWith('.incomplete')));
  assert.match(r.err, /downloading org\/stories\/model.safetensors \(/);

  log.length = 0;
  const again = await optiq(['download', 'org/stories'], {}, cache);
  assert.equal(again.code, 0, again.err);
  assert.equal(again.out.trim(), snap);
  assert.deepEqual(fileGets(), [], 'the second run downloads nothing');
});

test('the cache resolver serves a downloaded repo offline: generate by repo id equals generate on the folder', skip, async () => {
  const cache = freshCache();
  assert.equal((await optiq(['download', 'org/stories'], {}, cache)).code, 0);
  log.length = 0;
  const byId = await optiq(['generate', 'org/stories', '--prompt', PROMPT, '--max-tokens', '12', '--quiet'], { HF_HUB_OFFLINE: '1' }, cache);
  assert.equal(byId.code, 0, byId.err);
  assert.equal(log.length, 0, 'offline: no request at all');
  const local = await optiq(['generate', modelDir, '--prompt', PROMPT, '--max-tokens', '12', '--quiet'], {}, cache);
  assert.equal(byId.out, local.out);
  assert.ok(byId.out.length > 5);
  // A pinned commit needs no refs/ lookup.
  const pinned = await optiq(['generate', `org/stories@${repos['org/stories'].commit}`, '--prompt', PROMPT, '--max-tokens', '12', '--quiet'],
    { HF_HUB_OFFLINE: '1' }, cache);
  assert.equal(pinned.out, local.out, pinned.err);
});

test('a connection cut mid-file resumes with a Range request and the blob checks out', skip, async () => {
  const cache = freshCache();
  log.length = 0;
  const r = await optiq(['download', 'org/cut'], {}, cache);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /download of org\/cut\/model.safetensors cut at .*: resuming/);
  const cdn = log.filter((e) => e.path.startsWith('/cdn/'));
  assert.equal(cdn.length, 2, JSON.stringify(cdn));
  assert.equal(cdn[0].range, undefined);
  assert.equal(cdn[1].range, 'bytes=300000-');
  const snap = r.out.trim();
  assert.deepEqual(readFileSync(path.join(snap, 'model.safetensors')), repos['org/cut'].files['model.safetensors']);
});

test('a download that fails its sha256 is discarded with a clear error', skip, async () => {
  const cache = freshCache();
  const r = await optiq(['download', 'org/corrupt'], {}, cache);
  assert.equal(r.code, 1);
  assert.match(r.err, /checksum mismatch for org\/corrupt\/model.safetensors: the hub says sha256 [0-9a-f]{64}, the download has [0-9a-f]{64}/);
  const blobs = path.join(cache, 'models--org--corrupt/blobs');
  assert.ok(!readdirSync(blobs).some((f) => f === sha256(repos['org/corrupt'].files['model.safetensors']) || f.endsWith('.incomplete')),
    readdirSync(blobs).join(','));
});

test('unknown repos and revisions are 404s; a gated repo needs a token with access, which never goes to the CDN', skip, async () => {
  const cache = freshCache();
  const missing = await optiq(['download', 'org/missing'], {}, cache);
  assert.equal(missing.code, 1);
  assert.match(missing.err, new RegExp(`repository org/missing not found on ${base}`));
  const rev = await optiq(['download', 'org/stories@v9'], {}, cache);
  assert.equal(rev.code, 1);
  assert.match(rev.err, /revision 'v9' not found in org\/stories/);
  const gated = await optiq(['download', 'org/gated'], {}, cache);
  assert.equal(gated.code, 2);
  assert.match(gated.err, /org\/gated is a gated repository: accept its terms on the hub, then set HF_TOKEN/);
  const wrong = await optiq(['download', 'org/gated'], { HF_TOKEN: 'hf_bad' }, cache);
  assert.match(wrong.err, /the HF_TOKEN given has no access/);
  log.length = 0;
  const ok = await optiq(['download', 'org/gated'], { HF_TOKEN: 'hf_good' }, cache);
  assert.equal(ok.code, 0, ok.err);
  assert.ok(log.some((e) => e.path.includes('/resolve/') && e.auth === 'Bearer hf_good'));
  assert.ok(log.filter((e) => e.path.startsWith('/cdn/')).every((e) => e.auth === undefined), 'the token stays with the hub');
});

test('offline or unreachable: a clear error naming the cache path searched, or the cached copy', skip, async () => {
  const cache = freshCache();
  const off = await optiq(['generate', 'org/stories', '--prompt', PROMPT, '--max-tokens', '2'], { HF_HUB_OFFLINE: '1' }, cache);
  assert.equal(off.code, 1);
  assert.ok(off.err.includes(`org/stories@main is not in the Hugging Face cache and HF_HUB_OFFLINE is set (searched ${cache}/models--org--stories/snapshots)`), off.err);
  const down = await optiq(['download', 'org/stories'], { HF_ENDPOINT: 'http://127.0.0.1:9' }, cache);
  assert.equal(down.code, 1);
  assert.match(down.err, /cannot reach http:\/\/127.0.0.1:9 \(.*\) to download org\/stories@main, and the Hugging Face cache has no copy \(searched /);
  assert.equal((await optiq(['download', 'org/stories'], {}, cache)).code, 0);
  const cached = await optiq(['generate', 'org/stories', '--prompt', PROMPT, '--max-tokens', '2', '--quiet'], { HF_ENDPOINT: 'http://127.0.0.1:9' }, cache);
  assert.equal(cached.code, 0, cached.err);
  assert.match(cached.err, /cannot reach http:\/\/127.0.0.1:9 .*: using the cached/);
});

test('adapters resolve the same way, into the same cache', skip, async () => {
  const cache = freshCache();
  const byId = await optiq(['generate', modelDir, '--adapter', 'org/agent', '--prompt', PROMPT, '--max-tokens', '12', '--quiet'], {}, cache);
  assert.equal(byId.code, 0, byId.err);
  assert.ok(existsSync(path.join(cache, 'models--org--agent/snapshots', repos['org/agent'].commit, 'adapters.safetensors')));
  assert.ok(!existsSync(path.join(cache, 'models--org--agent/snapshots', repos['org/agent'].commit, 'README.md')));
  const local = await optiq(['generate', modelDir, '--adapter', path.join(dir, 'adapter'), '--prompt', PROMPT, '--max-tokens', '12', '--quiet'], {}, cache);
  const base = await optiq(['generate', modelDir, '--prompt', PROMPT, '--max-tokens', '12', '--quiet'], {}, cache);
  assert.equal(byId.out, local.out);
  assert.notEqual(byId.out, base.out);
});

test('serve --model REPO lists the repo id in /v1/models and answers from the cached copy', skip, async () => {
  const cache = freshCache();
  assert.equal((await optiq(['download', 'org/stories'], {}, cache)).code, 0);
  const server = await startServer(['--model', 'org/stories'], { HF_HUB_CACHE: cache, HF_ENDPOINT: base, HF_HUB_OFFLINE: '1' });
  try {
    const models = await (await fetch(server.base + '/v1/models')).json();
    assert.equal(models.data[0].id, 'org/stories');
    const r = await (await fetch(server.base + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: PROMPT, max_tokens: 12, temperature: 0 }) })).json();
    const local = await optiq(['generate', modelDir, '--prompt', PROMPT, '--max-tokens', '12', '--quiet'], {}, cache);
    assert.equal(r.choices[0].text, local.out.replace(/\n$/, ''));
  } finally {
    server.stop();
  }
});

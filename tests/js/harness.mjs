// What the integration tests share: where the binary, Claude Code and ../shared are, the skip-or-fail rule for
// missing ones, starting `optiq serve` on a free loopback port, and temporary model folders with edited configs.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const shared = process.env.OPTIQ_SHARED_DIR || path.resolve(root, '../shared');
export const bin = process.env.OPTIQ_BIN || path.join(root, 'build/optiq');
// Claude Code's native binary, from @anthropic-ai/claude-code in package.json (npm ci in tests/js).
export const claudeBin = path.join(root, 'tests/js/node_modules/.bin/claude');

// The node:test options for a file whose tests need these paths: {} when all exist, { skip: why } when one is
// missing. In CI (CI=true) a missing path (shared data, the binary, an npm package) fails the run instead.
export function needs(...paths) {
  const gone = paths.find((p) => !existsSync(p));
  const why = gone === undefined ? ''
    : gone === bin ? `optiq binary not found: ${bin}`
    : gone === claudeBin ? `Claude Code not installed: ${claudeBin} (run npm ci in tests/js)`
    : `shared test data not found: ${gone}`;
  if (why && process.env.CI === 'true') throw new Error(why);
  return why ? { skip: why } : {};
}

// Starts `optiq serve ARGS --port 0` (with `env` added to the environment) and resolves with { base, pid, stop, exited,
// log } once it listens; stop() sends SIGTERM, exited resolves with { code, signal } when the process ends, log() is
// everything the server has written to stderr so far.
export function startServer(args, env = {}) {
  const proc = spawn(bin, ['serve', ...args, '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  const exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  return new Promise((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error('server did not start:\n' + log)), 30000);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /listening on (http:\/\/[^\s]+)/.exec(log);
      if (m) { clearTimeout(timer); resolve({ base: m[1], pid: proc.pid, stop: () => proc.kill('SIGTERM'), exited, log: () => log }); }
    });
    proc.on('exit', (code) => reject(new Error(`server exited ${code}:\n${log}`)));
  });
}

// A temporary model folder: links to the files of the model folder `dir`, except the JSON files named in `edits`,
// which are written with those fields replaced, e.g. { 'config.json': { max_position_embeddings: 2048 } }.
// The caller removes it (rmSync(folder, { recursive: true })).
export function editedModel(dir, edits) {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'optiq-model-'));
  for (const f of readdirSync(dir)) {
    if (f in edits) writeFileSync(path.join(tmp, f), JSON.stringify({ ...JSON.parse(readFileSync(path.join(dir, f), 'utf8')), ...edits[f] }));
    else symlinkSync(path.join(dir, f), path.join(tmp, f));
  }
  return tmp;
}

// An mlx-lm LoRA adapter folder: adapters.safetensors from `tensors` ([{ name, dtype, shape, data: Buffer }]) and
// adapter_config.json with `loraParameters` (e.g. { rank: 4, scale: 2.0 }).
export function writeMlxAdapter(folder, tensors, loraParameters) {
  const header = {};
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.length] };
    offset += t.data.length;
  }
  let h = JSON.stringify(header);
  while ((h.length + 8) % 8) h += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  mkdirSync(folder);
  writeFileSync(path.join(folder, 'adapters.safetensors'), Buffer.concat([len, Buffer.from(h), ...tensors.map((t) => t.data)]));
  writeFileSync(path.join(folder, 'adapter_config.json'), JSON.stringify({ fine_tune_type: 'lora', num_layers: -1, lora_parameters: loraParameters }));
  return folder;
}

// An mlx-lm LoRA adapter of rank 4 and scale 2 with random F32 weights (a fixed LCG from `seed`) on `modules` of every
// layer of the model whose parsed config.json is `cfg`: lora_a [in, r], lora_b [r, out]. Returns the folder.
export function writeRandomAdapter(folder, cfg, seed, modules = ['self_attn.q_proj', 'mlp.down_proj']) {
  const dims = { 'self_attn.q_proj': [cfg.hidden_size, cfg.num_attention_heads * cfg.head_dim],
    'mlp.down_proj': [cfg.intermediate_size, cfg.hidden_size] };
  const r = 4;
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5) * 0.6;
  const tensors = [];
  for (let l = 0; l < cfg.num_hidden_layers; l++)
    for (const mod of modules) {
      const [inp, out] = dims[mod];
      for (const [name, shape] of [[`model.layers.${l}.${mod}.lora_a`, [inp, r]], [`model.layers.${l}.${mod}.lora_b`, [r, out]]])
        tensors.push({ name, dtype: 'F32', shape, data: Buffer.from(new Float32Array(shape[0] * shape[1]).map(rnd).buffer) });
    }
  return writeMlxAdapter(folder, tensors, { rank: r, scale: 2.0, dropout: 0.0 });
}

// What the integration tests share: where the binary and ../shared are, the skip-or-fail rule for missing
// shared data, and starting `optiq serve` on a free loopback port.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const shared = process.env.OPTIQ_SHARED_DIR || path.resolve(root, '../shared');
export const bin = process.env.OPTIQ_BIN || path.join(root, 'build/optiq');

// The node:test options for a file whose tests need these paths: {} when all exist, { skip: why } when one is
// missing. In CI (CI=true) missing shared data fails the run instead.
export function needs(...paths) {
  const gone = paths.find((p) => !existsSync(p));
  const why = gone === undefined ? '' : gone === bin ? `optiq binary not found: ${bin}` : `shared test data not found: ${gone}`;
  if (why && process.env.CI === 'true') throw new Error(why);
  return why ? { skip: why } : {};
}

// Starts `optiq serve ARGS --port 0` (with `env` added to the environment) and resolves with { base, stop }
// once it listens.
export function startServer(args, env = {}) {
  const proc = spawn(bin, ['serve', ...args, '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  return new Promise((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error('server did not start:\n' + log)), 30000);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /listening on (http:\/\/[^\s]+)/.exec(log);
      if (m) { clearTimeout(timer); resolve({ base: m[1], stop: () => proc.kill('SIGTERM') }); }
    });
    proc.on('exit', (code) => reject(new Error(`server exited ${code}:\n${log}`)));
  });
}

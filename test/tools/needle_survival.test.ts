import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const tool = fileURLToPath(new URL('../../tools/needle_survival.ts', import.meta.url));

function run(args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', tool, ...args], { encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test('needle_survival prints, per layer and head, which needle tokens an eviction method keeps', () => {
  const r = run(['--method', 'kvcompress', '--budget', '128', '--length', '512', '--samples', '1', '--opt', 'pooling=max']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[0]!, /^kvcompress budget 128 pooling=max on niah_single_1 at 512 tokens$/);
  assert.match(lines[1]!, /^sample 0: needle (\d{7}) at tokens \d+-\d+ of \d+, answer ".*"$/);
  // The bundled model: 2 layers x 2 KV heads, one line each; a mark and a score per value digit.
  const heads = lines.slice(2);
  assert.equal(heads.length, 4, r.stdout);
  for (const l of heads) assert.match(l, /^ {2}layer [01] head [01]: kept \d+\/\d+ {2}needle [01]{7} {2}scores( \S+){7}$/);
  const bad = run(['--method', 'quest', '--budget', '128', '--length', '512', '--samples', '1']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /quest has no eviction stage/);
});

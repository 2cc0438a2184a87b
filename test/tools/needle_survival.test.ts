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
  const bad = run(['--method', 'full', '--budget', '128', '--length', '512', '--samples', '1']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /full has no eviction stage and no selector/);
});

test('needle_survival follows a decode-time selector: needle tokens read per step beside the exact top of the same size', () => {
  const r = run(['--method', 'quest', '--budget', '128', '--length', '512', '--samples', '1', '--steps', '3', '--opt', 'dense_layers=0']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[1]!, /^sample 0: needle (\d{7}) at tokens \d+-\d+ of \d+, answer ".*"$/);
  const steps = lines.filter((l) => l.startsWith('  step ') && l.includes('->'));
  assert.ok(steps.length >= 1 && steps.length <= 3, r.stdout);
  // The bundled model: 2 layers x 2 KV heads x 2 query heads = 8 (layer, query head) per step.
  for (const l of steps) assert.match(l, /^ {2}step \d+ -> \S+: whole needle read by [0-8]\/8 \(layer, query head\); exact top of the same size: [0-8]\/8$/);
  const detail = lines.filter((l) => /^ {4}layer [01] head [01]\.[01]: read \d+\/\d+ {2}needle [01-]{7} {2}ranks( \d+){7}$/.test(l));
  assert.equal(detail.length, 8, r.stdout);
  // Quest reads max(3, 128/16) = 8 pages of 16 (the partial last page among them): at most 128 of the slots held.
  for (const l of detail) {
    const [, read, held] = /read (\d+)\/(\d+)/.exec(l)!;
    assert.ok(Number(read) <= 128 && Number(read) > 112 - 16 && Number(read) < Number(held), l);
  }
});

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { Engine } from '../../src/engine/engine.ts';
import { modelFingerprint, runEval, type EvalPlan } from '../../src/eval/runner.ts';
import { writeReport } from '../../src/eval/report.ts';

const entry = fileURLToPath(new URL('../helpers/rocketkv.ts', import.meta.url));
let root = '';
let model = '';
let engine: Engine;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'rkv-eval-'));
  model = join(root, 'tiny');
  writeRandomCheckpoint(model, {
    architecture: 'llama', hiddenSize: 64, intermediateSize: 128, numLayers: 1, numHeads: 4, numKvHeads: 2,
    vocab: 'bytes', maxPositionEmbeddings: 2048, tieWordEmbeddings: true, dtype: 'F32', seed: 3,
  });
  engine = await Engine.load(model, { threads: 2, weights: 'f32' });
});

after(async () => {
  await engine.close();
  rmSync(root, { recursive: true, force: true });
});

function plan(out: string, extra: Partial<EvalPlan> = {}): EvalPlan {
  return { tasks: ['niah_single_1', 'vt'], lengths: [1024], methods: ['full', 'snapkv'], budgets: [64], samples: 2, seed: 5, mode: 'query-aware', outDir: out, ...extra };
}

test('the same evaluation on the same seed gives the same numbers twice; finished runs are skipped, mismatched ones refused', async () => {
  const a = await runEval(engine, plan(join(root, 'a')));
  const b = await runEval(engine, plan(join(root, 'b')));
  assert.equal(a.length, 4);
  assert.deepEqual(a.map((r) => [r.task, r.method, r.budget, r.score, r.storedKvBytes, r.readBytesPerStep]), b.map((r) => [r.task, r.method, r.budget, r.score, r.storedKvBytes, r.readBytesPerStep]));
  for (const dir of readdirSync(join(root, 'a'))) {
    assert.equal(readFileSync(join(root, 'a', dir, 'predictions.csv'), 'utf8'), readFileSync(join(root, 'b', dir, 'predictions.csv'), 'utf8'), dir);
    for (const f of ['metrics.json', 'config.yaml']) statSync(join(root, 'a', dir, f));
  }
  const snap = a.find((r) => r.method === 'snapkv')!;
  assert.ok(snap.storedKvBytes < a.find((r) => r.method === 'full' && r.task === snap.task)!.storedKvBytes);
  // Resumable: a second run into the same directory generates nothing.
  const before = statSync(join(root, 'a', readdirSync(join(root, 'a'))[0]!, 'predictions.csv')).mtimeMs;
  let generated = 0;
  const again = await runEval(engine, plan(join(root, 'a')), () => { generated++; });
  assert.deepEqual(again.map((r) => r.score), a.map((r) => r.score));
  assert.equal(statSync(join(root, 'a', readdirSync(join(root, 'a'))[0]!, 'predictions.csv')).mtimeMs, before);
  assert.equal(generated, 4, 'one progress report per skipped run, no sample generated');
  // A finished run is reused only for the same question: another sample count, seed or checkpoint is
  // refused before any work, and nothing in the directory changes.
  const count = () => readdirSync(join(root, 'a')).length;
  const n0 = count();
  // Another sample count is refused when the run kept no per-sample rows to grow from.
  const rowless = join(root, 'rowless');
  cpSync(join(root, 'a'), rowless, { recursive: true });
  for (const d of readdirSync(rowless)) rmSync(join(rowless, d, 'samples.jsonl'), { force: true });
  await assert.rejects(runEval(engine, plan(rowless, { samples: 3 })), /do not match this evaluation \(first: .*it has 2 samples, 3 asked\)/);
  await assert.rejects(runEval(engine, plan(join(root, 'a'), { seed: 6 })), /it used seed 5, 6 asked/);
  const other = join(root, 'other', 'tiny');
  writeRandomCheckpoint(other, {
    architecture: 'llama', hiddenSize: 64, intermediateSize: 128, numLayers: 1, numHeads: 4, numKvHeads: 2,
    vocab: 'bytes', maxPositionEmbeddings: 2048, tieWordEmbeddings: true, dtype: 'F32', seed: 4,
  });
  const retrained = await Engine.load(other, { threads: 2, weights: 'f32' });
  try {
    assert.notEqual(await modelFingerprint(other), await modelFingerprint(model));
    await assert.rejects(runEval(retrained, plan(join(root, 'a'))), /made with another checkpoint/);
  } finally {
    await retrained.close();
  }
  // A run made before its method's rule last changed is refused; runs of unchanged methods stand.
  const oldDir = join(root, 'old');
  const old = (await runEval(engine, plan(oldDir, { tasks: ['niah_single_1'], methods: ['full', 'quest'] })));
  for (const d of readdirSync(oldDir).filter((x) => x.includes('__'))) {
    const mPath = join(oldDir, d, 'metrics.json');
    const { rulesVersion: _v, ...older } = JSON.parse(readFileSync(mPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(mPath, JSON.stringify({ ...older, rulesVersion: 3 }));
  }
  await assert.rejects(runEval(engine, plan(oldDir, { tasks: ['niah_single_1'], methods: ['full', 'quest'] })), /made under method rules v3, and quest's rule changed in v4/);
  const fullOnly = await runEval(engine, plan(oldDir, { tasks: ['niah_single_1'], methods: ['full'] }));
  assert.deepEqual(fullOnly.map((m) => m.score), [old[0]!.score], 'the full cell made under v3 is reused');
  assert.equal(count(), n0);
  assert.equal(statSync(join(root, 'a', readdirSync(join(root, 'a'))[0]!, 'predictions.csv')).mtimeMs, before);
  const md = await writeReport(join(root, 'a'), a, 'test');
  assert.match(md, /\| niah_single_1 \| 1024 \| query-aware \| [0-9.]+ \| [0-9.]+ \|/);
  assert.match(readFileSync(join(root, 'a', 'plots', 'vt__1024.svg'), 'utf8'), /stroke-dasharray/);
});

test('query-agnostic runs compress the context before the question', async () => {
  const r = await runEval(engine, plan(join(root, 'qa'), { tasks: ['niah_single_1'], mode: 'query-agnostic', samples: 1 }));
  assert.ok(readdirSync(join(root, 'qa')).every((d) => d.endsWith('__query-agnostic')));
  assert.ok(r.find((x) => x.method === 'snapkv')!.storedKvBytes < r.find((x) => x.method === 'full')!.storedKvBytes);
});

test('multi-turn runs ask several questions of one context on one cache', async () => {
  const r = await runEval(engine, plan(join(root, 'mt'), { tasks: ['niah_single_1'], lengths: [1900], methods: ['full', 'rocketkv-mt'], budgets: [64], mode: 'multi-turn', turns: 3, samples: 1 }));
  const dirs = readdirSync(join(root, 'mt'));
  assert.ok(dirs.length === 2 && dirs.every((d) => d.endsWith('__multi-turn')), dirs.join(' '));
  const csv = readFileSync(join(root, 'mt', dirs[0]!, 'predictions.csv'), 'utf8');
  // Three answers and three sets of references, each turn about a key of its own.
  const refs = csv.split('\n')[1]!.match(/[0-9]{7}/g)!;
  assert.equal(new Set(refs).size, 3, csv);
  assert.match(readFileSync(join(root, 'mt', dirs[0]!, 'config.yaml'), 'utf8'), /turns: 3/);
  // rocketkv-mt keeps the whole cache (it filters a view per turn) and reads less per step than full.
  const full = r.find((x) => x.method === 'full')!;
  const mt = r.find((x) => x.method === 'rocketkv-mt')!;
  assert.equal(mt.storedKvBytes, full.storedKvBytes);
  assert.ok(mt.readBytesPerStep < full.readBytesPerStep, `${mt.readBytesPerStep} vs ${full.readBytesPerStep}`);
});

test('method variants with options of their own run side by side as columns of their own', async () => {
  const out = join(root, 'variants');
  const r = await runEval(engine, plan(out, { tasks: ['niah_single_1'], methods: ['kvcompress', 'kvcompress:protected_window=512'], samples: 1 }));
  assert.deepEqual(readdirSync(out).sort(), ['niah_single_1__1024__tiny__kvcompress+protected_window=512__64', 'niah_single_1__1024__tiny__kvcompress__64']);
  const base = r.find((x) => x.method === 'kvcompress')!;
  const variant = r.find((x) => x.method === 'kvcompress:protected_window=512')!;
  // A protected window past the budget keeps what the default evicts: the option reached the method.
  assert.ok(variant.storedKvBytes > base.storedKvBytes, `${variant.storedKvBytes} vs ${base.storedKvBytes}`);
  const md = await writeReport(out, r, 'variants');
  assert.match(md, /\| kvcompress@64 \| kvcompress:protected_window=512@64 \|/);
});

function cli(args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', entry, ...args], { encoding: 'utf8' });
  return { code: r.status ?? -1, stderr: r.stderr };
}

test('bad input to eval is refused before any work, one line', () => {
  const out = join(root, 'never');
  const base = ['eval', 'ruler', '--model', model, '--out', out, '--samples', '1'];
  const cases: [string[], RegExp][] = [
    [['--tasks', 'niah_single_9'], /unknown task 'niah_single_9'; choose from: niah_single_1/],
    [['--lengths', '4096'], /length 4096 is larger than the model's context of 2048/],
    [['--methods', 'full,snapkv', '--budgets', ''], /budget list is empty/],
    [['--methods', 'full,snapkv', '--budgets', '64,,128'], /--budgets must be a comma-separated list/],
    [['--methods', 'full,snapkv', '--budgets', '64,big'], /--budgets takes positive integers/],
    [['--methods', 'snapkv:window', '--budgets', '64'], /options follow the name as :key=value, got 'window'/],
    [['--methods', 'snapkv:stride=2', '--budgets', '64'], /snapkv: unknown option 'stride'; valid options: /],
    [['--methods', 'full:window_size=8'], /full takes no options/],
    [['--tasks', 'niah_single_1,vt', '--multi-turn'], /multi-turn mode asks several questions of one niah context; vt has one question/],
  ];
  for (const [extra, pattern] of cases) {
    const r = cli([...base, ...extra]);
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, pattern);
  }
  const file = join(root, 'a-file');
  writeFileSync(file, 'x');
  const r = cli(['eval', 'ruler', '--model', model, '--out', join(file, 'sub'), '--samples', '1']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /cannot write to the output directory/);
  assert.throws(() => statSync(out), 'nothing was written for refused runs');
});

test('an interrupted evaluation resumes at the sample where it stopped and gives the numbers of an uninterrupted one', async () => {
  const p = (out: string) => plan(join(root, out), { tasks: ['niah_single_1'], samples: 3 });
  const clean = await runEval(engine, p('clean'));
  // Stop after three answers (sample 0 of both cells, sample 1 of full), as a kill would.
  await assert.rejects(runEval(engine, p('cut'), (done) => { if (done === 3) throw new Error('interrupted'); }), /interrupted/);
  const lines = (f: string) => readFileSync(f, 'utf8').trim().split('\n').length;
  const cells = readdirSync(join(root, 'cut'));
  assert.deepEqual(cells.map((d) => lines(join(root, 'cut', d, 'samples.jsonl'))).sort(), [2, 3], 'header + rows kept per cell');
  // A row an interruption cut short (no newline) is dropped on resume and its sample redone.
  const { appendFileSync } = await import('node:fs');
  const fullCell = cells.find((d) => d.includes('__full__'))!;
  appendFileSync(join(root, 'cut', fullCell, 'samples.jsonl'), '{"i":2,"prompt_tok');
  let calls = 0;
  const resumed = await runEval(engine, p('cut'), () => { calls++; });
  for (const d of cells) for (const line of readFileSync(join(root, 'cut', d, 'samples.jsonl'), 'utf8').trim().split('\n')) JSON.parse(line);
  // One report per cell with kept rows, then one per remaining answer (3 of 6).
  assert.equal(calls, 2 + 3);
  const untimed = (ms: typeof clean) => ms.map(({ tokensPerSecond: _t, ...m }) => m);
  assert.deepEqual(untimed(resumed), untimed(clean));
  for (const d of cells) assert.equal(readFileSync(join(root, 'cut', d, 'predictions.csv'), 'utf8'), readFileSync(join(root, 'clean', d, 'predictions.csv'), 'utf8'));
  // Rows made under other settings are not mixed in.
  await assert.rejects(runEval(engine, plan(join(root, 'cut'), { tasks: ['niah_single_1'], samples: 3, seed: 6 })), /do not match this evaluation/);
});

test('a grid grows and shrinks reusing its rows: more samples run only the new ones, fewer take the first', async () => {
  const p = (out: string, samples: number) => plan(join(root, out), { tasks: ['niah_single_1'], samples });
  const two = await runEval(engine, p('grow', 2));
  let calls = 0;
  const three = await runEval(engine, p('grow', 3), () => { calls++; });
  assert.equal(calls, 2 + 2, 'one report per cell with rows kept, then one answer per cell for sample 2');
  const clean = await runEval(engine, p('grow-clean', 3));
  const untimed = (ms: typeof clean) => ms.map(({ tokensPerSecond: _t, ...m }) => m);
  assert.deepEqual(untimed(three), untimed(clean));
  calls = 0;
  const back = await runEval(engine, p('grow', 2), () => { calls++; });
  assert.equal(calls, 2, 'no sample answered again');
  assert.deepEqual(untimed(back), untimed(two));
});

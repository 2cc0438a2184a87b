import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../src/engine/engine.ts';
import { runEval } from '../../src/eval/runner.ts';
import { bundledModelDir, defaultModelDir } from '../../src/cli/default-model.ts';

/**
 * The bundled model end to end through the evaluation command's runner, on a fixed seed: a
 * regression anywhere in the model path (loader, tokenizer, kernels, forward pass, KV store,
 * generation) shows up as a score below what the checkpoint reaches. At 1024 tokens
 * `rocketkv eval ruler --samples 40 --seed 0` scores niah_single_1 100 and niah_single_2 100; the
 * targets leave room for float reassociation across thread counts, not for a broken path (a
 * broken one scores 0).
 */
const TARGETS: { task: 'niah_single_1' | 'niah_single_2'; length: number; samples: number; min: number }[] = [
  { task: 'niah_single_1', length: 1024, samples: 40, min: 90 },
  { task: 'niah_single_2', length: 1024, samples: 40, min: 90 },
];

let root = '';
let engine: Engine;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'rkv-bundled-'));
  engine = await Engine.load(bundledModelDir(), { threads: 2 });
});

after(async () => {
  await engine.close();
  rmSync(root, { recursive: true, force: true });
});

test('the bundled model is the default model', async () => {
  assert.equal(await defaultModelDir(), bundledModelDir());
  assert.equal(engine.config.numKvHeads < engine.config.numHeads, true, 'GQA');
});

for (const t of TARGETS) {
  test(`bundled model, full KV: ${t.task} at ${t.length} tokens scores at least ${t.min} on ${t.samples} samples`, async () => {
    const [r] = await runEval(engine, {
      tasks: [t.task], lengths: [t.length], methods: ['full'], budgets: [], samples: t.samples, seed: 0, mode: 'query-aware', outDir: join(root, t.task),
    });
    assert.ok(r!.score >= t.min, `${t.task}@${t.length}: score ${r!.score.toFixed(1)} < ${t.min}`);
  });
}

test('bundled model: rocketkv keeps less KV and reads less per step than the full cache on the same prompts', async () => {
  const [full, rk] = await runEval(engine, {
    tasks: ['niah_single_1'], lengths: [288], methods: ['full', 'rocketkv'], budgets: [64], samples: 4, seed: 0, mode: 'query-aware', outDir: join(root, 'rk'),
  });
  assert.ok(rk!.storedKvBytes < full!.storedKvBytes, `${rk!.storedKvBytes} vs ${full!.storedKvBytes}`);
  assert.ok(rk!.readBytesPerStep < full!.readBytesPerStep, `${rk!.readBytesPerStep} vs ${full!.readBytesPerStep}`);
});

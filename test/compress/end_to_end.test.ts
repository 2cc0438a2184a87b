import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { Engine, type GenerateOptions } from '../../src/engine/engine.ts';
import { methodNames } from '../../src/compress/registry.ts';
import { UsageError } from '../../src/errors.ts';
import { rocketkvSplit } from '../../src/compress/budget.ts';
import { scoreDuoPattern } from '../../src/compress/duo-scoring.ts';
import { duoPatternPath } from '../../src/compress/duo.ts';

let dir = '';
let engine: Engine;
const PROMPT = 'Compression must not change a thing when the budget covers everything. '.repeat(2);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rkv-e2e-'));
  writeRandomCheckpoint(dir, {
    architecture: 'llama', hiddenSize: 96, intermediateSize: 128, numLayers: 2, numHeads: 6, numKvHeads: 2,
    vocab: 'bytes', maxPositionEmbeddings: 2048, tieWordEmbeddings: false, dtype: 'F32', seed: 31,
  });
  engine = await Engine.load(dir, { threads: 2, weights: 'f32' });
  // duo reads its head pattern beside the model: score one (two short texts) for this checkpoint.
  writeFileSync(duoPatternPath(dir, false), JSON.stringify(await scoreDuoPattern(engine, { texts: 2, textTokens: 128 })));
});

after(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

async function generate(opts: GenerateOptions, prompt = PROMPT) {
  const gen = engine.generate(prompt, { maxTokens: 24, temperature: 0, ignoreEos: true, ...opts });
  for await (const _ of gen) { /* drain */ }
  return gen;
}

test('every method equals full exactly when its budget covers the sequence', async () => {
  const full = await generate({ kv: { method: 'full' } });
  assert.equal(full.tokens.length, 24);
  const names = methodNames().filter((n) => n !== 'full');
  assert.ok(names.length > 0);
  for (const method of names) {
    const g = await generate({ kv: { method, budget: 4096 } });
    assert.deepEqual(g.tokens, full.tokens, `${method} at budget 4096`);
    assert.equal(engine.pool.blocksInUse, 0, `${method} released its blocks`);
  }
});

test('bad KV settings are refused before any work, naming the valid choices', () => {
  assert.throws(() => engine.generate('x', { kv: { method: 'nope', budget: 8 } }), (e: Error) => e instanceof UsageError && /choose one of: full/.test(e.message));
  for (const budget of [0, -3, 2.5, Number.NaN]) {
    const m = methodNames().find((n) => n !== 'full') ?? 'full';
    assert.throws(() => engine.generate('x', { kv: { method: m, budget } }), UsageError, `budget ${budget}`);
  }
  assert.throws(() => engine.generate('x', { kv: { method: 'full', colour: 'red' } }), /unknown option 'colour'/);
});

test('kvPlanMaxNewTokens sizes rocketkv\'s budget split without changing how many tokens are generated', async () => {
  const prompt = 'Budget splits are sized for the new tokens a request plans. '.repeat(10);
  const ids = engine.tokenizer.encode(prompt);
  const c = engine.config;
  const kept = async (plan?: number) => {
    const g = engine.generate({ tokens: ids }, { maxTokens: 4, temperature: 0, ignoreEos: true, kv: { method: 'rocketkv', budget: 64 }, ...(plan ? { kvPlanMaxNewTokens: plan } : {}) });
    for await (const _ of g) { /* drain */ }
    assert.equal(g.tokens.length, 4);
    return g.stats!.kv.kvsPerHead.max;
  };
  const split = (maxNew: number) => rocketkvSplit({ promptLength: ids.length, maxNewTokens: maxNew, budget: 64, headDim: c.headDim, modelMaxLen: 2048 });
  // Kept = the prompt budget of the split, plus the 3 tokens appended during decoding.
  assert.equal(await kept(), split(4).promptBudget + 3);
  assert.equal(await kept(128), split(128).promptBudget + 3);
  assert.notEqual(split(4).promptBudget, split(128).promptBudget);
});

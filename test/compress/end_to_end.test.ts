import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { Engine, type GenerateOptions } from '../../src/engine/engine.ts';
import { methodNames } from '../../src/compress/registry.ts';
import { UsageError } from '../../src/errors.ts';

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

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { Engine, type GenerateStats } from '../../src/engine/engine.ts';
import { resolveCompression, type CompressionRequest } from '../../src/compress/registry.ts';

let dir = '';
let engine: Engine;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rkv-mt-'));
  writeRandomCheckpoint(dir, {
    architecture: 'llama', hiddenSize: 96, intermediateSize: 128, numLayers: 2, numHeads: 6, numKvHeads: 2,
    vocab: 'bytes', maxPositionEmbeddings: 4096, tieWordEmbeddings: false, dtype: 'F32', seed: 51,
  });
  engine = await Engine.load(dir, { threads: 2, weights: 'f32' });
});

after(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

const CONTEXT = Array.from({ length: 30 }, (_, i) => `line ${i}: the value of key${i} is ${(i * 7919) % 1000}.`).join(' ');
const TURNS = [CONTEXT + ' Question one?', ' Question two, about key3?', ' And a third?'];

async function converse(kv: CompressionRequest): Promise<{ tokens: number[][]; stats: GenerateStats[] }> {
  const conv = engine.conversation(kv);
  const tokens: number[][] = [];
  const stats: GenerateStats[] = [];
  try {
    for (const turn of TURNS) {
      const g = conv.send(turn, { maxTokens: 12, ignoreEos: true });
      for await (const _ of g) { /* drain */ }
      tokens.push(g.tokens);
      stats.push(g.stats!);
    }
  } finally {
    conv.close();
  }
  return { tokens, stats };
}

test('a conversation keeps one cache across turns; every method equals full when the budget covers it', async () => {
  const full = await converse({ method: 'full' });
  const total = TURNS.reduce((n, t) => n + t.length, 0) + 3 * 12;
  assert.ok(full.stats[2]!.kv.kvsPerHead.max >= total - 3, 'the third turn sees every earlier token');
  for (const method of ['rocketkv-mt', 'rocketkv', 'snapkv', 'kvcompress', 'quest']) {
    const g = await converse({ method, budget: 8192 });
    assert.deepEqual(g.tokens, full.tokens, method);
  }
  assert.equal(engine.pool.blocksInUse, 0);
});

test('rocketkv-mt keeps the whole cache and reads less at every turn', async () => {
  const full = await converse({ method: 'full' });
  const mt = await converse({ method: 'rocketkv-mt', budget: 64, window: 8, kernel: 7 });
  for (let t = 0; t < TURNS.length; t++) {
    const f = full.stats[t]!.kv;
    const m = mt.stats[t]!.kv;
    assert.equal(m.storedBytes, f.storedBytes, `turn ${t}: nothing evicted`);
    assert.ok(m.readPerStep.k + m.readPerStep.v < 0.6 * (f.readPerStep.k + f.readPerStep.v), `turn ${t}: ${m.readPerStep.total} vs ${f.readPerStep.total} bytes/step`);
  }
  // rocketkv (single view, evicting) frees memory instead.
  const rk = await converse({ method: 'rocketkv', budget: 64, window: 8, kernel: 7 });
  assert.ok(rk.stats[2]!.kv.storedBytes < full.stats[2]!.kv.storedBytes);
});

test('rocketkv-mt observes 128 prompt queries by default (RocketKV\'s multi-turn runs), rocketkv 32', () => {
  assert.equal(resolveCompression({ method: 'rocketkv-mt', budget: 64 }).options['window'], 128);
  assert.equal(resolveCompression({ method: 'rocketkv', budget: 64 }).options['window'], 32);
  assert.equal(resolveCompression({ method: 'rocketkv-mt', budget: 64, window: 16 }).options['window'], 16);
});

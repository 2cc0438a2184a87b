import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { Engine, type GenerateOptions, type Generation, type PrefilledPrompt } from '../../src/engine/engine.ts';
import type { CompressionRequest } from '../../src/compress/registry.ts';
import { makeRng } from '../../src/engine/sampling.ts';
import { UsageError } from '../../src/errors.ts';

/**
 * A request started from a prompt prefilled once (engine.prefill + `from`) must be the request run
 * on its own: same tokens, same kept slots, same bytes stored, read and at peak. Budgets are well
 * below the prompt, so every method really evicts or selects.
 */
let dir = '';
let engine: Engine;
const L = 420;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rkv-fork-'));
  writeRandomCheckpoint(dir, {
    architecture: 'llama', hiddenSize: 96, intermediateSize: 128, numLayers: 2, numHeads: 6, numKvHeads: 2,
    vocab: 'bytes', maxPositionEmbeddings: 2048, tieWordEmbeddings: false, dtype: 'F32', seed: 91, weightScale: 2,
  });
  engine = await Engine.load(dir, { threads: 2, weights: 'f32' });
});

after(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

const prompt = (() => {
  const rng = makeRng(17);
  return Array.from({ length: L }, () => Math.floor(rng() * 256));
})();

async function drain(g: Generation): Promise<Generation> {
  for await (const _ of g) { /* drain */ }
  return g;
}

function summary(g: Generation) {
  const s = g.stats!;
  return {
    tokens: g.tokens,
    stored: s.kv.storedBytes,
    kvsPerHead: s.kv.kvsPerHead,
    summaryBytes: s.kv.summaryBytes,
    read: s.kv.readPerStep,
    peak: s.kvPeakBytes,
    peakDecode: s.kvPeakDecodeBytes,
    evictions: s.kv.evictions,
  };
}

const METHODS: CompressionRequest[] = [
  { method: 'full' },
  { method: 'streaming_llm', budget: 64 },
  { method: 'snapkv', budget: 64 },
  { method: 'snapkv', budget: 64, gqa: 'expand' },
  { method: 'snapkv++', budget: 96 },
  { method: 'pyramidkv', budget: 64 },
  { method: 'adakv', budget: 64 },
  { method: 'kvcompress', budget: 48 },
  { method: 'kvcompress', budget: 48, continual: true, protected_window: 4 },
  { method: 'knorm', budget: 64 },
  { method: 'tova', budget: 64 },
  { method: 'expected_attention', budget: 64 },
  { method: 'quest', budget: 64, page: 8, dense_layers: 0 },
  { method: 'sparq', budget: 64 },
  { method: 'hybrid', budget: 64 },
  { method: 'exact_topk', budget: 32 },
  { method: 'rocketkv', budget: 64 },
  { method: 'rocketkv-mt', budget: 64 },
];

const opts: GenerateOptions = { maxTokens: 12, ignoreEos: true, temperature: 0, prefillChunkTokens: 160 };

test('every method started from a shared prefill equals its own run: tokens, kept slots, bytes stored, read and at peak', async () => {
  // Runs of their own first, with nothing else in the pool, as a request alone would be.
  const alone = [];
  // Chunked, as the shared prefill ran (layer by layer would lower the request's peak, nothing else).
  for (const kv of METHODS) alone.push(summary(await drain(engine.generate({ tokens: prompt }, { ...opts, kv, prefillOrder: 'chunk' }))));
  const pre = await engine.prefill({ tokens: prompt }, { prefillChunkTokens: 160, queryStatsSkip: 4 });
  const held = engine.pool.bytesInUse;
  try {
    for (const [i, kv] of METHODS.entries()) {
      const forked = summary(await drain(engine.generate({ tokens: prompt }, { ...opts, kv, from: pre })));
      assert.deepEqual(forked, alone[i], `${JSON.stringify(kv)}`);
      assert.equal(engine.pool.bytesInUse, held, `${kv.method}: the fork's blocks went back to the pool`);
      assert.equal(pre.seq.totalSlots(), pre.seq.layers * pre.seq.kvHeads * L, `${kv.method}: the prefilled prompt is untouched`);
    }
  } finally {
    pre.release();
  }
  // The methods really evicted or selected at these budgets (not two full caches compared).
  const full = alone[0]!;
  for (const [i, kv] of METHODS.entries()) {
    if (kv.method === 'full' || kv.method === 'rocketkv-mt') continue;
    assert.ok(alone[i]!.stored < full.stored || alone[i]!.read.total < full.read.total, `${kv.method} kept or read everything`);
  }
  assert.equal(engine.pool.bytesInUse, 0);
});

test('a query-agnostic conversation started from a prefilled context equals its own run', async () => {
  const context = prompt.slice(0, 380);
  const question = prompt.slice(380);
  const methods: CompressionRequest[] = [{ method: 'snapkv', budget: 64 }, { method: 'kvcompress', budget: 48 }, { method: 'rocketkv', budget: 64 }];
  const run = async (kv: CompressionRequest, from?: PrefilledPrompt) => {
    const conv = engine.conversation(kv, { promptTokens: L, maxNewTokens: 128 });
    try {
      await drain(conv.send({ tokens: context }, { maxTokens: 0, ...(from ? { from } : {}) }));
      return summary(await drain(conv.send({ tokens: question }, { ...opts, skipEviction: true })));
    } finally {
      conv.close();
    }
  };
  const alone = [];
  for (const kv of methods) alone.push(await run(kv));
  const pre = await engine.prefill({ tokens: context });
  try {
    for (const [i, kv] of methods.entries()) assert.deepEqual(await run(kv, pre), alone[i], kv.method);
  } finally {
    pre.release();
  }
});

test('a prefilled prompt is refused for another prompt, for a later turn, and for a window larger than it kept', async () => {
  const pre = await engine.prefill({ tokens: prompt }, { window: 16 });
  try {
    assert.throws(() => engine.generate({ tokens: prompt.slice(1) }, { ...opts, from: pre }), (e: Error) => e instanceof UsageError && /differs from the prefilled/.test(e.message));
    await assert.rejects(drain(engine.generate({ tokens: prompt }, { ...opts, kv: { method: 'snapkv', budget: 64 }, from: pre })), /kept 16 query rows, this method needs 32/);
    const conv = engine.conversation({ method: 'full' });
    await drain(conv.send({ tokens: prompt.slice(0, 10) }, { maxTokens: 1 }));
    assert.throws(() => conv.send({ tokens: prompt }, { from: pre }), /only the first turn/);
    conv.close();
  } finally {
    pre.release();
  }
  assert.throws(() => engine.generate({ tokens: prompt }, { ...opts, from: pre }), /cannot fork a released sequence/);
  assert.equal(engine.pool.bytesInUse, 0);
});

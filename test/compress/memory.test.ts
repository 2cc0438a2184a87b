import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { Engine } from '../../src/engine/engine.ts';
import { CompressionSession } from '../../src/compress/session.ts';
import { createCompression, resolveCompression, type CompressionRequest } from '../../src/compress/registry.ts';
import type { SequenceKV } from '../../src/kv/store.ts';
import { makeRng } from '../../src/engine/sampling.ts';
import { argmax } from '../../src/engine/sampling.ts';
import { PoolExhaustedError } from '../../src/kv/pool.ts';

let dir = '';
let engine: Engine;
const BLOCK = 16;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rkv-mem-'));
  writeRandomCheckpoint(dir, {
    architecture: 'qwen2', hiddenSize: 96, intermediateSize: 128, numLayers: 3, numHeads: 6, numKvHeads: 2,
    vocab: 'bytes', maxPositionEmbeddings: 4096, tieWordEmbeddings: true, dtype: 'F32', seed: 41,
  });
  engine = await Engine.load(dir, { threads: 2, weights: 'f32' });
});

after(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

function shape() {
  const c = engine.config;
  return { numLayers: c.numLayers, numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim };
}

/** Prefill `promptTokens` random tokens into a new sequence with the method's session, evicting at the end. */
function prefill(req: CompressionRequest, promptTokens: number, maxNew = 64): { seq: SequenceKV; session: CompressionSession; logits: Float32Array } {
  const rng = makeRng(promptTokens);
  const tokens = Array.from({ length: promptTokens }, () => Math.floor(rng() * 256));
  const kv = resolveCompression(req);
  const seq = engine.newSequence();
  const session = new CompressionSession(
    seq,
    createCompression(kv, { promptLength: promptTokens, maxNewTokens: maxNew, shape: shape(), maxPositionEmbeddings: 4096, blockSlots: BLOCK }),
    shape(),
    kv.budget,
  );
  let logits = new Float32Array(0);
  for (let i = 0; i < tokens.length; i += 128) logits = engine.model.forward([{ seq, tokens: tokens.slice(i, i + 128), hooks: session }])[0]!;
  session.afterPrefill(promptTokens);
  return { seq, session, logits };
}

function blocksNeeded(seq: SequenceKV): number {
  return seq.heads.reduce((n, h) => n + Math.ceil(h.length / BLOCK), 0);
}

test('eviction really frees memory: pool bytes drop to the kept slots rounded up to blocks', () => {
  for (const req of [{ method: 'snapkv++', budget: 100 }, { method: 'kvcompress', budget: 64, continual: false }] as CompressionRequest[]) {
    const before = engine.pool.blocksInUse;
    const { seq } = prefill(req, 600);
    const fullBlocks = Math.ceil(600 / BLOCK) * shape().numLayers * shape().numKvHeads;
    assert.equal(engine.pool.blocksInUse - before, blocksNeeded(seq), `${req.method}: blocks in use = kept slots in whole blocks`);
    assert.ok(blocksNeeded(seq) < fullBlocks / 4, `${req.method}: ${blocksNeeded(seq)} blocks vs ${fullBlocks} for the full cache`);
    for (const h of seq.heads) {
      // Positions stay original and increasing after compaction.
      for (let s = 1; s < h.length; s++) assert.ok(h.positions[s]! > h.positions[s - 1]!);
      assert.equal(h.positions[h.length - 1], 599, 'the newest prompt token is kept');
    }
    seq.release();
    assert.equal(engine.pool.blocksInUse, before);
  }
});

test('kvcompress: heads end with different lengths, the average respects the budget within a block, the protected window stays', () => {
  const budget = 80;
  const { seq } = prefill({ method: 'kvcompress', budget, continual: false, protected_window: 32 }, 700);
  const lengths = [...seq.lengths()];
  assert.ok(new Set(lengths).size > 1, `lengths ${lengths}`);
  const mean = lengths.reduce((a, b) => a + b, 0) / lengths.length;
  assert.ok(mean <= budget + BLOCK, `mean ${mean}`);
  assert.ok(mean >= budget - BLOCK, `mean ${mean}`);
  for (const h of seq.heads) {
    const kept = new Set(h.positions.subarray(0, h.length));
    // protected_window 32 keeps the last 31 cached positions, as the fork counts it (the newest token is not cached yet).
    for (let p = 700 - 31; p < 700; p++) assert.ok(kept.has(p), `protected position ${p} evicted`);
  }
  seq.release();
});

test('kvcompress: blocks freed by one sequence serve another sequence in the same pool', async () => {
  // A pool of 1.5 full 800-token caches: B's full prefill fits beside A only once A has evicted.
  const fullBlocks = Math.ceil(800 / BLOCK) * shape().numLayers * shape().numKvHeads;
  const small = await Engine.load(dir, { threads: 2, weights: 'f32', kvMemoryBytes: Math.floor(1.5 * fullBlocks) * engine.pool.blockBytes });
  try {
    const rng = makeRng(3);
    const tokens = (n: number) => Array.from({ length: n }, () => Math.floor(rng() * 256));
    const holdA = async (kv: CompressionRequest) => {
      const conv = small.conversation(kv);
      for await (const _ of conv.send({ tokens: tokens(800) }, { maxTokens: 1 })) { /* drain */ }
      return conv;
    };
    const runB = async () => { for await (const _ of small.generate({ tokens: tokens(800) }, { maxTokens: 1 })) { /* drain */ } };
    const a = await holdA({ method: 'kvcompress', budget: 48, continual: false });
    const held = small.pool.blocksInUse;
    assert.ok(held < fullBlocks / 4, `A holds ${held} blocks after eviction (${fullBlocks} uncompressed)`);
    await runB();
    assert.equal(small.pool.blocksInUse, held, 'B returned its blocks; A keeps its own');
    a.close();
    // The same without eviction: A's full cache leaves too little for B.
    const full = await holdA({ method: 'full' });
    await assert.rejects(runB(), PoolExhaustedError);
    full.close();
    assert.equal(small.pool.blocksInUse, 0);
  } finally {
    await small.close();
  }
});

test('kvcompress continual: a long generation stays within budget + one block per head at every step', () => {
  const budget = 64;
  const { seq, session, logits: first } = prefill({ method: 'kvcompress', budget, continual: true, protected_window: 16 }, 300, 400);
  const heads = seq.heads.length;
  let logits = first;
  let evictionsDuring = 0;
  for (let step = 0; step < 300; step++) {
    logits = engine.model.forward([{ seq, tokens: [argmax(logits)], hooks: session, decode: true }])[0]!;
    const before = session.evictions;
    session.afterDecodeStep();
    if (session.evictions > before) evictionsDuring++;
    assert.ok(seq.totalSlots() <= (budget + BLOCK) * heads, `step ${step}: ${seq.totalSlots()} slots`);
  }
  assert.ok(evictionsDuring > 5, `continual evictions: ${evictionsDuring}`);
  assert.equal(seq.nextPosition, 600);
  seq.release();
});

test('peak KV memory is reported for the whole request and for the decode phase alone', async () => {
  const rng = makeRng(7);
  const tokens = Array.from({ length: 600 }, () => Math.floor(rng() * 256));
  const blockBytes = engine.pool.blockBytes;
  const heads = engine.config.numLayers * engine.config.numKvHeads;
  const run = async (kv: CompressionRequest, prefillOrder: 'auto' | 'chunk' = 'chunk') => {
    const gen = engine.generate({ tokens }, { maxTokens: 20, ignoreEos: true, kv, prefillOrder });
    for await (const _ of gen) { /* drain */ }
    return gen.stats!;
  };
  const full = await run({ method: 'full' });
  const snap = await run({ method: 'streaming_llm', budget: 64 });
  // Full cache: the decode phase ends with every token, which is also the request's peak.
  const fullBlocks = heads * Math.ceil((600 + 19) / BLOCK);
  assert.equal(full.kvPeakDecodeBytes, fullBlocks * blockBytes);
  assert.equal(full.kvPeakBytes, full.kvPeakDecodeBytes);
  assert.equal(engine.pool.bytesInUse, 0, 'both requests returned their blocks');
  // Evicting: the request peaks at the whole prompt (prefill runs uncompressed), the decode
  // phase only at the kept 64 slots plus the 19 appended ones, rounded to blocks.
  assert.equal(snap.kvPeakBytes, heads * Math.ceil(600 / BLOCK) * blockBytes);
  assert.equal(snap.kvPeakDecodeBytes, heads * Math.ceil((64 + 19) / BLOCK) * blockBytes);
  assert.equal(snap.kv.poolPeakDecodeBytes, snap.kvPeakDecodeBytes);
  assert.equal(snap.kv.poolPeakBytes, snap.kvPeakBytes);
  // Layer by layer (the default for a request alone): one layer holds the whole prompt at a time.
  const byLayer = await run({ method: 'streaming_llm', budget: 64 }, 'auto');
  assert.equal(byLayer.prefillOrder, 'layer');
  const layers = engine.config.numLayers;
  const perLayer = (heads / layers) * blockBytes;
  assert.equal(byLayer.kvPeakBytes, perLayer * (Math.ceil(600 / BLOCK) + (layers - 1) * Math.ceil(64 / BLOCK)));
  assert.equal(byLayer.kvPeakDecodeBytes, snap.kvPeakDecodeBytes);
});

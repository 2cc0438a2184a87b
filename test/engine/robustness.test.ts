import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { Engine, type GenerateOptions, type PromptInput } from '../../src/engine/engine.ts';
import { PoolExhaustedError } from '../../src/kv/pool.ts';
import { UsageError } from '../../src/errors.ts';

let dir = '';
let engine: Engine;
const prompt = (n: number): PromptInput => ({ tokens: Array.from({ length: n }, (_, i) => (i * 31 + 7) % 256) });

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rkv-robust-'));
  writeRandomCheckpoint(dir, {
    architecture: 'llama', hiddenSize: 96, intermediateSize: 128, numLayers: 2, numHeads: 6, numKvHeads: 2,
    vocab: 'bytes', maxPositionEmbeddings: 2048, tieWordEmbeddings: false, dtype: 'F32', seed: 61,
  });
  engine = await Engine.load(dir, { threads: 2, weights: 'f32' });
});

after(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

async function run(e: Engine, input: PromptInput, opts: GenerateOptions) {
  const g = e.generate(input, { maxTokens: 8, ignoreEos: true, ...opts });
  for await (const _ of g) { /* drain */ }
  return g;
}

test('a one-token last prefill chunk is prefill, not a decode step', async () => {
  for (const kv of [{ method: 'quest', budget: 32, page: 8 }, { method: 'full' }]) {
    const whole = await run(engine, prompt(257), { kv, prefillChunkTokens: 512 });
    const split = await run(engine, prompt(257), { kv, prefillChunkTokens: 256 });
    assert.deepEqual(split.tokens, whole.tokens, kv.method);
    assert.equal(split.stats!.kv.readPerStep.total, whole.stats!.kv.readPerStep.total, kv.method);
  }
});

test('the KV memory limit holds from the first block, and a failed expansion returns its blocks', async () => {
  const small = await Engine.load(dir, { threads: 1, weights: 'f32', kvMemoryBytes: 8 * engine.pool.blockBytes });
  try {
    assert.ok(small.pool.capacityBlocks <= 8);
    await assert.rejects(run(small, prompt(300), {}), PoolExhaustedError);
    assert.equal(small.pool.blocksInUse, 0);
  } finally {
    await small.close();
  }
  // 100 tokens x 2 layers x 2 KV heads = 28 blocks; expanding to 6 query heads needs 84 more.
  const mid = await Engine.load(dir, { threads: 1, weights: 'f32', kvMemoryBytes: 60 * engine.pool.blockBytes });
  try {
    await assert.rejects(run(mid, prompt(100), { kv: { method: 'snapkv', budget: 40, gqa: 'expand', window: 8 } }), PoolExhaustedError);
    assert.equal(mid.pool.blocksInUse, 0, 'no block lost');
  } finally {
    await mid.close();
  }
});

test('conversations: a failed turn ends the conversation; a turn left early still keeps its last shown token', async () => {
  const conv = engine.conversation({ method: 'full' });
  const g = conv.send(prompt(40), { maxTokens: 20, ignoreEos: true });
  let shown = 0;
  for await (const _ of g) { if (++shown === 3) break; }
  const next = conv.send(prompt(5), { maxTokens: 1, ignoreEos: true });
  for await (const _ of next) { /* drain */ }
  assert.equal(next.stats!.kv.kvsPerHead.max, 40 + 3 + 5 + 1, 'prompt + 3 shown tokens + next prompt + its token');
  conv.close();
  assert.throws(() => conv.send(prompt(2)), UsageError);

  const tiny = await Engine.load(dir, { threads: 1, weights: 'f32', kvMemoryBytes: 12 * engine.pool.blockBytes });
  try {
    const c = tiny.conversation({ method: 'full' });
    const first = c.send(prompt(30), { maxTokens: 2, ignoreEos: true });
    for await (const _ of first) { /* fits */ }
    const held = tiny.pool.blocksInUse;
    // A turn that can never fit is refused before any work: the conversation goes on.
    const second = c.send(prompt(100), { maxTokens: 2 });
    await assert.rejects((async () => { for await (const _ of second) { /* refused */ } })(), (e: Error) => e instanceof PoolExhaustedError && /never fit/.test(e.message));
    assert.equal(tiny.pool.blocksInUse, held, 'the cache is untouched');
    const third = c.send(prompt(3), { maxTokens: 1, ignoreEos: true });
    for await (const _ of third) { /* fits */ }
    assert.equal(third.stats!.kv.kvsPerHead.max, 30 + 2 + 3 + 1, 'the earlier turn is still there');
    // A turn that fails while running (here a forward that throws) ends the conversation.
    const forward = tiny.model.forward.bind(tiny.model);
    tiny.model.forward = () => { throw new Error('a kernel failed'); };
    const fourth = c.send(prompt(3), { maxTokens: 1 });
    await assert.rejects((async () => { for await (const _ of fourth) { /* fails */ } })(), /a kernel failed/);
    tiny.model.forward = forward;
    assert.throws(() => c.send(prompt(2)), /failed earlier/);
    assert.equal(tiny.pool.blocksInUse, 0);
  } finally {
    await tiny.close();
  }
});

test('closing a conversation while its turn runs ends the turn first, then frees the cache', async () => {
  const conv = engine.conversation({ method: 'full' });
  const g = conv.send(prompt(60), { maxTokens: 50, ignoreEos: true });
  let shown = 0;
  for await (const _ of g) if (++shown === 2) conv.close();
  await engine.scheduler.idle();
  assert.equal(g.stats?.finishReason ?? 'cancelled', 'cancelled');
  assert.ok(g.tokens.length < 50, `the turn stopped early (${g.tokens.length} tokens)`);
  assert.equal(engine.pool.blocksInUse, 0);
  assert.throws(() => conv.send(prompt(2)), /closed/);
});

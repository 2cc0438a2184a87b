// The scheduler: many requests at once under one KV limit give each request the tokens of its run
// alone (batched decode, queueing, preemption by recompute, cancellation), a request that can
// never fit is refused before any work, and the pool is empty once everything has ended.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine, type Generation, type GenerateOptions } from '../../src/engine/engine.ts';
import { bundledModelDir } from '../../src/cli/default-model.ts';
import { PoolExhaustedError } from '../../src/kv/pool.ts';
import type { CompressionRequest } from '../../src/compress/registry.ts';
import { keyValuePrompt } from '../helpers/prompts.ts';
import { makeRng } from '../../src/engine/sampling.ts';

interface Req { tokens: number[]; opts: GenerateOptions }

function prompt(n: number, seed: number): number[] {
  return keyValuePrompt(engine.tokenizer, n, seed);
}

/** Outputs that change from token to token often enough that a dropped or doubled token would show. */
function varied(t: number[]): boolean {
  let changes = 0;
  for (let i = 1; i < t.length; i++) if (t[i] !== t[i - 1]) changes++;
  return changes >= Math.min(5, t.length - 1);
}

async function drain(g: Generation): Promise<number[]> {
  for await (const _ of g) { /* drain */ }
  return g.tokens;
}

/** Each request alone: submitted and finished before the next starts. */
async function alone(engine: Engine, reqs: Req[]): Promise<number[][]> {
  const out: number[][] = [];
  for (const r of reqs) out.push(await drain(engine.submit({ tokens: r.tokens }, r.opts)));
  return out;
}

const METHODS: CompressionRequest[] = [
  { method: 'full' },
  { method: 'rocketkv', budget: 128 },
  { method: 'kvcompress', budget: 48 },
  { method: 'snapkv', budget: 96 },
  { method: 'quest', budget: 64 },
  { method: 'streaming_llm', budget: 80 },
  { method: 'kvcompress', budget: 32, continual: true },
  { method: 'hybrid', budget: 64 },
];

let engine: Engine;
before(async () => { engine = await Engine.load(bundledModelDir(), { threads: 2 }); });
after(async () => { await engine.close(); });

test('requests of different lengths and methods decoded in one batch equal each run alone', async () => {
  const lengths = [40, 300, 700, 130, 1000, 64, 420, 250];
  const reqs: Req[] = lengths.map((n, i) => ({ tokens: prompt(n, i), opts: { maxTokens: 64, ignoreEos: true, kv: METHODS[i % METHODS.length] } }));
  const solo = await alone(engine, reqs);
  const before = engine.scheduler.stats.maxDecodeBatch;
  engine.scheduler.stats.maxDecodeBatch = 0;
  const together = await Promise.all(reqs.map((r) => drain(engine.submit({ tokens: r.tokens }, r.opts))));
  assert.ok(engine.scheduler.stats.maxDecodeBatch >= reqs.length - 1, `at most ${engine.scheduler.stats.maxDecodeBatch} sequences decoded in one step`);
  engine.scheduler.stats.maxDecodeBatch = Math.max(before, engine.scheduler.stats.maxDecodeBatch);
  for (let i = 0; i < reqs.length; i++) assert.deepEqual(together[i], solo[i], `request ${i} (${JSON.stringify(reqs[i]!.opts.kv)}, ${lengths[i]} tokens)`);
  assert.ok(solo.every(varied), 'greedy outputs vary');
  assert.equal(engine.pool.blocksInUse, 0);
});

test('under a KV limit that forces queueing and preemption, every request still equals its run alone', async () => {
  const small = await Engine.load(bundledModelDir(), { threads: 2, kvMemoryBytes: 260 * engine.pool.blockBytes });
  try {
    // Two 490-token prompts fit (4 heads x 31 blocks each); as they grow by 100 tokens they do not.
    const reqs: Req[] = [490, 480, 300, 470, 200, 460].map((n, i) => ({ tokens: prompt(n, 50 + i), opts: { maxTokens: 100, ignoreEos: true, temperature: 0.8, seed: i, kv: i === 2 ? { method: 'kvcompress', budget: 32 } : { method: 'full' } } }));
    const solo = await alone(small, reqs);
    const p0 = small.scheduler.stats.preemptions;
    const gens = reqs.map((r) => small.submit({ tokens: r.tokens }, r.opts));
    const together = await Promise.all(gens.map(drain));
    assert.ok(small.scheduler.stats.preemptions > p0, 'the limit forced at least one preemption');
    assert.ok(small.scheduler.stats.recomputedTokens > 0, 'a sequence was preempted while decoding');
    assert.ok(gens.some((g) => (g.stats?.preemptions ?? 0) > 0));
    for (let i = 0; i < reqs.length; i++) assert.deepEqual(together[i], solo[i], `request ${i}`);
    assert.ok(solo.every(varied), 'sampled outputs vary');
    assert.equal(small.pool.blocksInUse, 0);
    assert.equal(small.pool.reservedBlocks, 0);
  } finally {
    await small.close();
  }
});

test('cancellation by an abort signal or by leaving the loop frees the blocks at once', async () => {
  const ac = new AbortController();
  const a = engine.submit({ tokens: prompt(600, 7) }, { maxTokens: 200, ignoreEos: true, signal: ac.signal });
  const b = engine.submit({ tokens: prompt(500, 8) }, { maxTokens: 200, ignoreEos: true });
  const c = engine.submit({ tokens: prompt(100, 9) }, { maxTokens: 10, ignoreEos: true });
  let seen = 0;
  await assert.rejects((async () => {
    for await (const _ of a) if (++seen === 3) ac.abort();
  })(), (e: Error) => e.name === 'AbortError');
  let got = 0;
  for await (const _ of b) if (++got === 2) break;
  const cTokens = await drain(c);
  assert.equal(cTokens.length, 10);
  await engine.scheduler.idle();
  assert.ok(a.tokens.length < 200 && b.tokens.length < 200, `cancelled early: ${a.tokens.length}, ${b.tokens.length} tokens`);
  assert.equal(engine.pool.blocksInUse, 0);
  // A signal aborted before the start: nothing runs.
  const d = engine.submit({ tokens: prompt(50, 1) }, { maxTokens: 5, signal: AbortSignal.abort() });
  await assert.rejects(drain(d), (e: Error) => e.name === 'AbortError');
  assert.equal(d.tokens.length, 0);
});

test('a request that can never fit is refused before any work, with its forecast and the limit', async () => {
  const small = await Engine.load(bundledModelDir(), { threads: 1, kvMemoryBytes: 64 * engine.pool.blockBytes });
  try {
    assert.throws(
      () => small.submit({ tokens: prompt(2000, 3) }, { maxTokens: 8 }),
      (e: Error) => e instanceof PoolExhaustedError && /never fit/.test(e.message) && /need \d+ blocks/.test(e.message) && /limit holds 64/.test(e.message),
    );
    assert.equal(small.pool.blocksInUse, 0);
    assert.equal(small.scheduler.runningCount + small.scheduler.waitingCount, 0);
    // The same prompt fits once compressed? No: its prompt runs uncompressed first, so it is refused too.
    assert.throws(() => small.submit({ tokens: prompt(2000, 3) }, { maxTokens: 8, kv: { method: 'kvcompress', budget: 16 } }), PoolExhaustedError);
    // One that fits runs.
    assert.equal((await drain(small.submit({ tokens: prompt(100, 3) }, { maxTokens: 4, ignoreEos: true }))).length, 4);
  } finally {
    await small.close();
  }
});

test('soak: 200 requests with random lengths, methods, budgets and cancellations under a tight limit', async () => {
  const small = await Engine.load(bundledModelDir(), { threads: 2, kvMemoryBytes: 330 * engine.pool.blockBytes });
  try {
    const r = makeRng(2024);
    const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
    const reqs = Array.from({ length: 200 }, (_, i) => {
      const kv = pick(METHODS);
      const budget = kv.budget === undefined ? undefined : pick([16, 32, 64, 128]);
      return {
        tokens: prompt(8 + Math.floor(r() * 600), 1000 + i),
        opts: { maxTokens: 1 + Math.floor(r() * 80), ignoreEos: r() < 0.7, ...(r() < 0.5 ? { temperature: 0.8, topP: 0.95, seed: i } : {}), kv: budget === undefined ? kv : { ...kv, budget } } as GenerateOptions,
        cancelAfter: r() < 0.15 ? Math.floor(r() * 4) : -1,
      };
    });
    // A request whose forecast exceeds the limit is refused at submit, alone or not.
    const submitOrRefuse = (q: Req, signal?: AbortSignal): Generation | null => {
      try {
        return small.submit({ tokens: q.tokens }, { ...q.opts, signal });
      } catch (e) {
        assert.ok(e instanceof PoolExhaustedError && /never fit/.test(e.message), String(e));
        return null;
      }
    };
    const solo: (number[] | null)[] = [];
    for (const q of reqs) { const g = submitOrRefuse(q); solo.push(g ? await drain(g) : null); }
    const p0 = small.scheduler.stats.preemptions;
    let maxWaiting = 0;
    const results = await Promise.all(reqs.map(async (q) => {
      const ac = new AbortController();
      const g = submitOrRefuse(q, ac.signal);
      if (!g) return { tokens: null, cancelled: false };
      maxWaiting = Math.max(maxWaiting, small.scheduler.waitingCount);
      if (q.cancelAfter === 0) ac.abort();
      let n = 0;
      try {
        for await (const _ of g) if (++n === q.cancelAfter) ac.abort();
        return { tokens: g.tokens, cancelled: false };
      } catch (e) {
        assert.equal((e as Error).name, 'AbortError');
        return { tokens: g.tokens, cancelled: true };
      }
    }));
    await small.scheduler.idle();
    assert.ok(maxWaiting > 10, `requests queued (${maxWaiting} waiting at most)`);
    assert.ok(small.scheduler.stats.preemptions > p0, 'the limit forced preemptions');
    assert.ok(small.scheduler.stats.recomputedTokens > 0, 'sequences were preempted while decoding');
    let cancelled = 0;
    for (let i = 0; i < reqs.length; i++) {
      const res = results[i]!;
      if (res.tokens === null || solo[i] === null) {
        assert.equal(res.tokens, solo[i], `request ${i} is refused alone and among others alike`);
        continue;
      }
      if (res.cancelled) {
        cancelled++;
        assert.deepEqual(res.tokens, solo[i]!.slice(0, res.tokens.length), `request ${i}: its tokens before cancellation`);
      } else {
        assert.deepEqual(res.tokens, solo[i], `request ${i} (${JSON.stringify(reqs[i]!.opts.kv)})`);
      }
    }
    assert.ok(cancelled > 5, `${cancelled} requests cancelled`);
    assert.equal(small.pool.blocksInUse, 0);
    assert.equal(small.pool.reservedBlocks, 0);
  } finally {
    await small.close();
  }
});

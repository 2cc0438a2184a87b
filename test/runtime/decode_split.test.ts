import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../../src/engine/engine.ts';
import { defaultModelDir } from '../../src/cli/default-model.ts';
import { MIN_KEYS_PER_PART } from '../../src/runtime/kernels.ts';

/**
 * Decode attention split over threads by key range (attendPagedPart + attendMerge) against one
 * range per job: the bundled model has 2 KV heads, so on 8 threads a decode step has 2 jobs and
 * each is split into 4 ranges of its ~1,300 keys. Every step's logits agree to float rounding and
 * the greedy tokens are the same; with 1 thread there is no split at all.
 */
test('decode attention split by key range gives the logits of one range per job', async () => {
  const dir = await defaultModelDir();
  const prompt = Array.from({ length: 120 }, (_, i) => `Line ${i}: the grass is green and the sky is blue.`).join(' ') + ' The special magic number is 4720913. What is the special magic number? It is';
  const run = async (threads: number, split: boolean) => {
    const engine = await Engine.load(dir, { threads });
    const k = engine.runtime.k;
    const attend = k.attendPaged.bind(k);
    let splitCalls = 0;
    // The forward pass passes each sequence's key ranges; `split` false forces one range per job.
    k.attendPaged = (jobs, n, pool, bs, d, G, rs, scale, parts = true) => {
      const ranges = typeof parts === 'number' ? parts : parts ? k.decodeKeyParts(jobs, n) : 1;
      if (split && ranges > 1) splitCalls++;
      attend(jobs, n, pool, bs, d, G, rs, scale, split ? parts : false);
    };
    try {
      const tokens = engine.tokenizer.encode(prompt);
      assert.ok(tokens.length >= 4 * MIN_KEYS_PER_PART, `a prompt of ${tokens.length} tokens splits into 4 ranges`);
      const seq = engine.newSequence();
      const steps: Float32Array[] = [engine.model.forward([{ seq, tokens }])[0]!.slice()];
      const out: number[] = [];
      for (let s = 0; s < 8; s++) {
        const last = steps.at(-1)!;
        let best = 0;
        for (let i = 1; i < last.length; i++) if (last[i]! > last[best]!) best = i;
        out.push(best);
        steps.push(engine.model.forward([{ seq, tokens: [best], decode: true }])[0]!.slice());
      }
      seq.release();
      return { steps, out, splitCalls };
    } finally {
      await engine.close();
    }
  };
  const one = await run(8, false);
  const many = await run(8, true);
  assert.ok(many.splitCalls >= 8 * 2, `every decode step's layers ran split (${many.splitCalls} calls)`);
  assert.deepEqual(many.out, one.out, 'the same greedy tokens');
  let worst = 0;
  let scale = 0;
  for (let s = 0; s < one.steps.length; s++) {
    for (let i = 0; i < one.steps[s]!.length; i++) {
      worst = Math.max(worst, Math.abs(one.steps[s]![i]! - many.steps[s]![i]!));
      scale = Math.max(scale, Math.abs(one.steps[s]![i]!));
    }
  }
  assert.ok(worst <= 1e-4 * Math.max(1, scale), `decode logits differ by ${worst} (largest |logit| ${scale})`);
});

/**
 * The split with slot lists and one query head per job: quest per query head (dense_layers 0, the
 * bundled model has 2 layers) reads 64 pages of 16 per query head, so the 4 jobs of a step each
 * hold 1,024 listed slots and 8 threads cut each into 2 ranges. Same greedy tokens as unsplit.
 */
test('decode attention split by key range over selected slot lists (quest per query head)', async () => {
  const dir = await defaultModelDir();
  const prompt = Array.from({ length: 120 }, (_, i) => `Line ${i}: the grass is green and the sky is blue.`).join(' ') + ' The special magic number is 4720913. What is the special magic number? It is';
  const run = async (split: boolean) => {
    const engine = await Engine.load(dir, { threads: 8 });
    const k = engine.runtime.k;
    const attend = k.attendPaged.bind(k);
    let listed = 0;
    k.attendPaged = (jobs, n, pool, bs, d, G, rs, scale, parts = true) => {
      const ranges = typeof parts === 'number' ? parts : parts ? k.decodeKeyParts(jobs, n) : 1;
      const f = engine.runtime.i32(jobs, n * 8);
      if (split && ranges > 1 && G === 1 && f[4] !== 0) listed++;
      attend(jobs, n, pool, bs, d, G, rs, scale, split ? parts : false);
    };
    try {
      const g = engine.generate(prompt, { maxTokens: 12, temperature: 0, ignoreEos: true, kv: { method: 'quest', budget: 1024, dense_layers: 0, gqa: 'head' } });
      for await (const _ of g) { /* drain */ }
      return { tokens: g.tokens, listed };
    } finally {
      await engine.close();
    }
  };
  const one = await run(false);
  const many = await run(true);
  assert.ok(many.listed >= 11 * 2, `decode steps ran split over slot lists, one query head per job (${many.listed} calls)`);
  assert.deepEqual(many.tokens, one.tokens);
});

// Decode steps of several sequences in one forward call give each sequence the logits of the same
// step run alone, bit for bit (f32 and int8 weights, decode rows beside a prompt chunk, and with
// enough threads that long sequences split their keys into ranges).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../../src/engine/engine.ts';
import { bundledModelDir } from '../../src/cli/default-model.ts';
import type { SequenceKV } from '../../src/kv/store.ts';

function argmax(v: Float32Array): number {
  let b = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[b]!) b = i;
  return b;
}

function prompt(n: number, seed: number): number[] {
  return Array.from({ length: n }, (_, i) => 1 + ((i * 131 + seed * 977) % 250));
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}

const STEPS = 6;

for (const [weights, threads] of [['f32', 2], ['q8', 2], ['f32', 8], ['q8', 8]] as const) {
  test(`batched decode equals each sequence alone: ${weights} weights, ${threads} threads`, async () => {
    const engine = await Engine.load(bundledModelDir(), { threads, weights });
    try {
      const lengths = [37, 150, 700, 18];
      const prompts = lengths.map((n, i) => prompt(n, i));
      const m = engine.model;

      // Alone: prefill, then greedy steps one sequence at a time.
      const alone: Float32Array[][] = [];
      for (const p of prompts) {
        const seq = engine.newSequence();
        const steps: Float32Array[] = [m.forward([{ seq, tokens: p }])[0]!];
        for (let s = 0; s < STEPS; s++) steps.push(m.forward([{ seq, tokens: [argmax(steps.at(-1)!)], decode: true }])[0]!);
        alone.push(steps);
        seq.release();
      }

      // Batched: the first three prefill alone; the fourth's prompt joins the first decode step.
      const seqs: SequenceKV[] = prompts.map(() => engine.newSequence());
      const last: Float32Array[] = [];
      for (let i = 0; i < 3; i++) {
        last[i] = m.forward([{ seq: seqs[i]!, tokens: prompts[i]! }])[0]!;
        assert.ok(sameBits(last[i]!, alone[i]![0]!), `sequence ${i}: prefill logits differ`);
      }
      for (let s = 0; s < STEPS; s++) {
        const items = [0, 1, 2].map((i) => ({ seq: seqs[i]!, tokens: [argmax(last[i]!)], decode: true }));
        // Step 0: the fourth prompt's chunk rides along; later steps: it decodes too (it lags one step).
        if (s === 0) items.splice(1, 0, { seq: seqs[3]!, tokens: prompts[3]!, decode: false });
        else items.push({ seq: seqs[3]!, tokens: [argmax(last[3]!)], decode: true });
        const outs = m.forward(items);
        items.forEach((it, j) => { last[seqs.indexOf(it.seq)] = outs[j]!; });
        for (let i = 0; i < 3; i++) assert.ok(sameBits(last[i]!, alone[i]![s + 1]!), `sequence ${i}, step ${s + 1}: logits differ from its run alone`);
        assert.ok(sameBits(last[3]!, alone[3]![s]!), `sequence 3, step ${s}: logits differ from its run alone`);
      }
      for (const seq of seqs) seq.release();
      assert.equal(engine.pool.blocksInUse, 0);
    } finally {
      await engine.close();
    }
  });
}

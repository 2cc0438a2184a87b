import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SnapKVPlusPlus, snapkvppEntry } from '../../src/compress/snapkvpp.ts';
import type { ModelShape } from '../../src/compress/press.ts';
import { UsageError } from '../../src/errors.ts';
import { attentionLayerView, densePlanContext, randomAttentionLayer, seededRandom } from './helpers.ts';
import type { DenseAttentionLayer } from './helpers.ts';

const shape: ModelShape = { numLayers: 2, numHeads: 6, numKvHeads: 2, headDim: 16 };
const G = shape.numHeads / shape.numKvHeads;

// ---- brute force from ALGORITHMS.md (no code shared with the implementation) -----------------

/** RocketKV stage 1 for KV head h: summed window probs (window columns dropped), group-summed, max-pooled. */
function referenceKeep(x: DenseAttentionLayer, h: number, W: number, P: number, kernel: number): number[] {
  const L = x.length;
  if (L <= P) return Array.from({ length: L }, (_, i) => i);
  const w = Math.min(W, P, x.rows);
  const n = L - w;
  const s = new Array<number>(n).fill(0);
  for (let g = 0; g < G; g++) {
    const A = x.probs[h * G + g]!;
    for (let r = x.rows - w; r < x.rows; r++) for (let j = 0; j < n; j++) s[j] += A[r * L + j]!;
  }
  const pad = (kernel - 1) / 2;
  const pooled = s.map((_, i) => {
    let m = -Infinity;
    for (let j = i - pad; j <= i + pad; j++) if (j >= 0 && j < n) m = Math.max(m, s[j]!);
    return Math.fround(m);
  });
  const top = pooled.map((v, i) => ({ v, i })).sort((a, b) => b.v - a.v || a.i - b.i).slice(0, P - w).map((e) => e.i);
  for (let j = n; j < L; j++) top.push(j);
  return top.sort((a, b) => a - b);
}

function run(seed: number, L: number, P: number, window: number, kernel: number): number[][][] {
  const r = seededRandom(seed);
  const layers = [randomAttentionLayer(r, shape, L, window), randomAttentionLayer(r, shape, L, window)];
  const ev = new SnapKVPlusPlus({ promptBudget: P, window, kernel });
  assert.equal(ev.expandGqa, false);
  const scores = layers.map((x, l) => ev.score(attentionLayerView(x, l, false)));
  const kept = ev.plan(scores, densePlanContext(shape, layers.map(() => [L, L]), 9999));
  return layers.map((x, l) => {
    assert.equal(kept[l]!.length, shape.numKvHeads);
    return Array.from({ length: shape.numKvHeads }, (_, h) => {
      const want = referenceKeep(x, h, window, P, kernel);
      assert.deepEqual(Array.from(kept[l]![h]!), want, `seed ${seed} L ${L} P ${P} W ${window} k ${kernel} layer ${l} head ${h}`);
      return want;
    });
  });
}

test('snapkvpp matches the brute force (GQA group sum, maxpool 63), budgets below/at/above L', () => {
  let seed = 1;
  for (const L of [70, 143, 250]) {
    for (const P of [40, 64, Math.floor(L * 0.7), L - 1, L, L + 3]) run(seed++, L, P, 32, 63);
  }
});

test('snapkvpp matches the brute force with a small kernel and window', () => {
  let seed = 50;
  for (const L of [37, 101]) for (const P of [12, 30, L]) for (const kernel of [1, 7]) run(seed++, L, P, 8, kernel);
});

test('snapkvpp keeps the window and exactly the prompt budget per KV head', () => {
  const kept = run(99, 200, 80, 32, 63);
  for (const layer of kept) {
    for (const head of layer) {
      assert.equal(head.length, 80);
      for (let j = 168; j < 200; j++) assert.ok(head.includes(j));
    }
  }
});

test('snapkvpp entry: the budget is the prompt budget; evicts only past it; defaults 32/63', () => {
  const ctx = { budget: 300, promptLength: 1000, maxNewTokens: 8, shape, maxPositionEmbeddings: 4096, blockSlots: 16 };
  const ev = snapkvppEntry.create(ctx, { window: 32, kernel: 63 }).eviction!;
  assert.ok(ev instanceof SnapKVPlusPlus);
  assert.equal(ev.promptBudget, 300);
  assert.equal(ev.minLengthToEvict, 300);
  assert.equal(ev.windowSize, 32);
  assert.equal(snapkvppEntry.options['window']!.default, 32);
  assert.equal(snapkvppEntry.options['kernel']!.default, 63);
  assert.throws(() => snapkvppEntry.create(ctx, { window: 32, kernel: 64 }), UsageError);
});

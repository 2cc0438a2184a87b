import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AdaKV, adakvEntry } from '../../src/compress/adakv.ts';
import type { ModelShape } from '../../src/compress/press.ts';
import type { OptionValues } from '../../src/compress/method.ts';
import { attentionLayerView, densePlanContext, randomAttentionLayer, seededRandom } from './helpers.ts';
import type { DenseAttentionLayer } from './helpers.ts';

const shape: ModelShape = { numLayers: 2, numHeads: 6, numKvHeads: 2, headDim: 16 };
const G = shape.numHeads / shape.numKvHeads;

// ---- brute force from ALGORITHMS.md + Ada-KV/kvpress (no code shared with the implementation) ----

/** SnapKV score of each non-window slot of a stored head (mean over window rows and qHeads, pooled). */
function snapScores(x: DenseAttentionLayer, qHeads: number[], W: number, kernel: number, pooling: string): number[] {
  const L = x.length;
  const n = L - W;
  const s = new Array<number>(n).fill(0);
  for (const qh of qHeads) for (let r = x.rows - W; r < x.rows; r++) for (let j = 0; j < n; j++) s[j] += x.probs[qh]![r * L + j]!;
  for (let j = 0; j < n; j++) s[j] /= W * qHeads.length;
  const half = (kernel - 1) / 2;
  return s.map((_, i) => {
    const win: number[] = [];
    for (let j = i - half; j <= i + half; j++) win.push(j >= 0 && j < n ? s[j]! : pooling === 'avg' ? 0 : -Infinity);
    return Math.fround(pooling === 'avg' ? win.reduce((a, b) => a + b, 0) / kernel : Math.max(...win));
  });
}

/** Ada-KV allocation for one layer: each head's top floor(alpha (B - W)), then a layer-wide top-k; window kept. */
function referenceLayer(scores: number[][], L: number, W: number, B: number, alpha: number): number[][] {
  if (B >= L) return scores.map(() => Array.from({ length: L }, (_, i) => i));
  const X = B - W;
  const floor = Math.floor(alpha * X);
  const kept = scores.map(() => new Set<number>());
  scores.forEach((s, h) => {
    s.map((v, i) => ({ v, i })).sort((a, b) => b.v - a.v || a.i - b.i).slice(0, floor).forEach((e) => kept[h]!.add(e.i));
  });
  const rest: { v: number; h: number; i: number }[] = [];
  scores.forEach((s, h) => s.forEach((v, i) => { if (!kept[h]!.has(i)) rest.push({ v, h, i }); }));
  rest.sort((a, b) => b.v - a.v || a.h - b.h || a.i - b.i);
  for (const e of rest.slice(0, scores.length * X - scores.length * floor)) kept[e.h]!.add(e.i);
  return kept.map((k) => {
    for (let j = L - W; j < L; j++) k.add(j);
    return [...k].sort((a, b) => a - b);
  });
}

function options(o: Partial<Record<string, number | string>>): OptionValues {
  return { window: 16, kernel: 7, pooling: 'avg', gqa: 'group', alpha: 0.2, ...o };
}

function run(seed: number, L: number, B: number, o: Partial<Record<string, number | string>>): number[][][] {
  const r = seededRandom(seed);
  const opts = options(o);
  const expand = opts['gqa'] === 'expand';
  const W = opts['window'] as number;
  const layers = Array.from({ length: shape.numLayers }, () => randomAttentionLayer(r, shape, L, W));
  const ev = adakvEntry.create({ budget: B, promptLength: L, maxNewTokens: 8, shape, maxPositionEmbeddings: 4096, blockSlots: 16 }, opts).eviction!;
  assert.ok(ev instanceof AdaKV);
  assert.equal(ev.expandGqa, expand);
  const heads = expand ? shape.numHeads : shape.numKvHeads;
  const scores = layers.map((x, l) => ev.score(attentionLayerView(x, l, expand)));
  const kept = ev.plan(scores, densePlanContext(shape, layers.map(() => new Array(heads).fill(L)), B));
  return layers.map((x, l) => {
    const ref = Array.from({ length: heads }, (_, h) =>
      snapScores(x, expand ? [h] : Array.from({ length: G }, (_, g) => h * G + g), W, opts['kernel'] as number, opts['pooling'] as string));
    const want = referenceLayer(ref, L, W, B, opts['alpha'] as number);
    for (let h = 0; h < heads; h++) {
      assert.deepEqual(Array.from(kept[l]![h]!), want[h], `seed ${seed} L ${L} B ${B} layer ${l} head ${h} ${JSON.stringify(o)}`);
    }
    return want;
  });
}

test('adakv matches the brute force (floor + layer-wide top-k), GQA group and expand, budgets below/at/above L', () => {
  let seed = 1;
  for (const L of [61, 118]) {
    for (const B of [20, 33, 50, L - 1, L, L + 7]) {
      run(seed++, L, B, { gqa: 'group' });
      run(seed++, L, B, { gqa: 'expand', pooling: 'max', alpha: 0.5 });
    }
  }
});

test('adakv gives heads unequal budgets, keeps H x B per layer, the floor and the window', () => {
  const L = 118;
  const B = 40;
  const W = 16;
  for (const gqa of ['group', 'expand']) {
    const kept = run(42, L, B, { gqa });
    let unequal = false;
    for (const layer of kept) {
      const sizes = layer.map((h) => h.length);
      if (new Set(sizes).size > 1) unequal = true;
      assert.equal(sizes.reduce((a, b) => a + b, 0), layer.length * B);
      for (const head of layer) {
        assert.ok(head.length >= W + Math.floor(0.2 * (B - W)));
        for (let j = L - W; j < L; j++) assert.ok(head.includes(j));
      }
    }
    assert.ok(unequal, `${gqa}: every head got the same budget`);
  }
});

test('adakv with alpha = 1 is uniform SnapKV', () => {
  const kept = run(5, 90, 40, { alpha: 1 });
  for (const layer of kept) for (const head of layer) assert.equal(head.length, 40);
});

test('adakv entry: alpha default 0.2, SnapKV defaults, evicts only past the budget', () => {
  assert.equal(adakvEntry.options['alpha']!.default, 0.2);
  assert.equal(adakvEntry.options['gqa']!.default, 'expand');
  const ev = adakvEntry.create({ budget: 128, promptLength: 1000, maxNewTokens: 8, shape, maxPositionEmbeddings: 4096, blockSlots: 16 }, options({ window: 32 })).eviction!;
  assert.equal(ev.minLengthToEvict, 128);
  assert.equal(ev.windowSize, 32);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PyramidKV, pyramidkvEntry, pyramidLayerBudgets } from '../../src/compress/pyramidkv.ts';
import type { ModelShape } from '../../src/compress/press.ts';
import type { OptionValues } from '../../src/compress/method.ts';
import { attentionLayerView, densePlanContext, randomAttentionLayer, seededRandom } from './helpers.ts';
import type { DenseAttentionLayer } from './helpers.ts';

const shape: ModelShape = { numLayers: 4, numHeads: 6, numKvHeads: 2, headDim: 16 };

// ---- brute force from ALGORITHMS.md + PyramidKV/kvpress (no code shared with the implementation) ----

function pyRound(x: number): number {
  const f = Math.floor(x);
  const frac = x - f;
  if (frac > 0.5) return f + 1;
  if (frac < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Per-layer kept tokens: pyramid over the non-window part B - W, window added back. */
function referenceBudgets(B: number, W: number, L: number, layers: number, beta: number): number[] {
  if (B >= L) return new Array(layers).fill(L);
  const X = B - W;
  let lo = X / beta;
  let hi = 2 * X - lo;
  if (hi >= L - W) { hi = L - W; lo = 2 * X - hi; }
  const out: number[] = [];
  for (let l = 0; l < layers; l++) out.push(W + pyRound(hi - (l * (hi - lo)) / (layers - 1)));
  return out;
}

/** SnapKV keep of one stored head with `keep` tokens: mean window probs over qHeads, avg-pooled, top + window. */
function referenceKeep(x: DenseAttentionLayer, qHeads: number[], W: number, keep: number, kernel: number): number[] {
  const L = x.length;
  if (keep >= L) return Array.from({ length: L }, (_, i) => i);
  const n = L - W;
  const s = new Array<number>(n).fill(0);
  for (const qh of qHeads) for (let r = x.rows - W; r < x.rows; r++) for (let j = 0; j < n; j++) s[j] += x.probs[qh]![r * L + j]!;
  for (let j = 0; j < n; j++) s[j] /= W * qHeads.length;
  const half = (kernel - 1) / 2;
  const pooled = s.map((_, i) => {
    let t = 0;
    for (let j = i - half; j <= i + half; j++) if (j >= 0 && j < n) t += s[j]!;
    return Math.fround(t / kernel);
  });
  const idx = pooled.map((v, i) => ({ v, i })).sort((a, b) => b.v - a.v || a.i - b.i).slice(0, keep - W).map((e) => e.i);
  for (let j = n; j < L; j++) idx.push(j);
  return idx.sort((a, b) => a - b);
}

function options(o: Partial<Record<string, number | string>>): OptionValues {
  return { window: 16, kernel: 7, pooling: 'avg', gqa: 'group', beta: 20, ...o };
}

function run(seed: number, L: number, B: number, o: Partial<Record<string, number | string>>): number[][][] {
  const r = seededRandom(seed);
  const opts = options(o);
  const expand = opts['gqa'] === 'expand';
  const layers = Array.from({ length: shape.numLayers }, () => randomAttentionLayer(r, shape, L, opts['window'] as number));
  const ev = pyramidkvEntry.create({ budget: B, promptLength: L, maxNewTokens: 8, shape, maxPositionEmbeddings: 4096, blockSlots: 16 }, opts).eviction!;
  assert.ok(ev instanceof PyramidKV);
  assert.equal(ev.expandGqa, expand);
  const scores = layers.map((x, l) => ev.score(attentionLayerView(x, l, expand)));
  const heads = expand ? shape.numHeads : shape.numKvHeads;
  const kept = ev.plan(scores, densePlanContext(shape, layers.map(() => new Array(heads).fill(L)), B));
  const W = opts['window'] as number;
  const budgets = referenceBudgets(B, W, L, shape.numLayers, opts['beta'] as number);
  const G = shape.numHeads / shape.numKvHeads;
  return layers.map((x, l) => Array.from({ length: heads }, (_, h) => {
    const qHeads = expand ? [h] : Array.from({ length: G }, (_, g) => h * G + g);
    const want = referenceKeep(x, qHeads, W, budgets[l]!, 7);
    assert.deepEqual(Array.from(kept[l]![h]!), want, `seed ${seed} L ${L} B ${B} layer ${l} head ${h} ${JSON.stringify(o)}`);
    return want;
  }));
}

test('pyramidkv matches the brute force (per-layer pyramid budgets, SnapKV per head), GQA group and expand', () => {
  let seed = 1;
  for (const L of [90, 157]) {
    for (const B of [30, 45, 70, L - 1, L, L + 5]) {
      run(seed++, L, B, { gqa: 'group' });
      run(seed++, L, B, { gqa: 'expand', beta: 3 });
    }
  }
});

test('pyramidkv budgets fall from lower to higher layers and average B', () => {
  const kept = run(77, 157, 60, { gqa: 'group' });
  const sizes = kept.map((layer) => layer[0]!.length);
  for (let l = 1; l < sizes.length; l++) assert.ok(sizes[l]! < sizes[l - 1]!, `layer sizes ${sizes}`);
  const mean = sizes.reduce((a, b) => a + b, 0) / sizes.length;
  assert.ok(Math.abs(mean - 60) <= 0.5, `mean ${mean}`);
  for (const layer of kept) for (const head of layer) for (let j = 157 - 16; j < 157; j++) assert.ok(head.includes(j));
});

test('pyramidLayerBudgets: kvpress formula with beta 20, capped at the prompt, uniform for one layer', () => {
  for (const [B, W, L, layers, beta] of [[132, 32, 1000, 5, 20], [200, 32, 300, 8, 20], [1024, 32, 16000, 32, 20], [64, 8, 100, 3, 2]] as const) {
    const got = pyramidLayerBudgets(B, W, L, layers, beta);
    assert.deepEqual(got, referenceBudgets(B, W, L, layers, beta));
    assert.ok(got.every((b) => b >= W && b <= L), `${got}`);
    const mean = got.reduce((a, b) => a + b, 0) / layers;
    assert.ok(Math.abs(mean - B) <= 0.5, `mean ${mean} vs ${B}`);
  }
  assert.equal(pyramidLayerBudgets(200, 32, 300, 8, 20)[0], 300);
  assert.deepEqual(pyramidLayerBudgets(100, 32, 500, 1, 20), [100]);
  assert.deepEqual(pyramidLayerBudgets(600, 32, 500, 4, 20), [500, 500, 500, 500]);
});

test('pyramidkv entry: beta default 20, SnapKV defaults, evicts only past the budget', () => {
  assert.equal(pyramidkvEntry.options['beta']!.default, 20);
  assert.equal(pyramidkvEntry.options['window']!.default, 32);
  const ev = pyramidkvEntry.create({ budget: 128, promptLength: 1000, maxNewTokens: 8, shape, maxPositionEmbeddings: 4096, blockSlots: 16 }, options({ window: 32 })).eviction!;
  assert.equal(ev.minLengthToEvict, 128);
  assert.equal(ev.windowSize, 32);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KNorm, knormEntry } from '../../src/compress/knorm.ts';
import { Tova } from '../../src/compress/tova.ts';
import type { ModelShape } from '../../src/compress/press.ts';
import { attentionLayerView, densePlanContext, randomAttentionLayer, seededRandom, type DenseAttentionLayer } from './helpers.ts';

const shape: ModelShape = { numLayers: 2, numHeads: 6, numKvHeads: 2, headDim: 16 };
const G = shape.numHeads / shape.numKvHeads;

// ---- brute force from the formulas in the files' headers (no code shared) --------------------

function topPositions(scores: number[], k: number): number[] {
  return scores.map((v, i) => ({ v, i })).sort((a, b) => b.v - a.v || a.i - b.i).slice(0, k).map((e) => e.i).sort((a, b) => a - b);
}

function knormReference(x: DenseAttentionLayer, h: number, B: number): number[] {
  const d = shape.headDim;
  const k = x.keys[h]!;
  const s = Array.from({ length: x.length }, (_, j) => {
    let sq = 0;
    for (let i = 0; i < d; i++) sq += k[j * d + i]! ** 2;
    return Math.fround(-Math.sqrt(sq));
  });
  return topPositions(s, Math.min(B, x.length));
}

function tovaReference(x: DenseAttentionLayer, B: number): number[] {
  const L = x.length;
  const s = new Array<number>(L).fill(0);
  for (let qh = 0; qh < shape.numHeads; qh++) {
    const A = x.probs[qh]!;
    for (let j = 0; j < L - 1; j++) s[j] += A[(x.rows - 1) * L + j]! / shape.numHeads;
  }
  s[L - 1] = Math.max(...s.slice(0, L - 1)) + 1;
  return topPositions(s.map((v) => Math.fround(v)), Math.min(B, L));
}

function keptBy(method: KNorm | Tova, layers: DenseAttentionLayer[], B: number): Int32Array[][] {
  const scores = layers.map((x, l) => method.score(attentionLayerView(x, l, false)));
  return method.plan(scores, densePlanContext(shape, layers.map((x) => [x.length, x.length]), B));
}

test('knorm keeps the B keys of smallest norm per KV head (brute force), budgets below and at L', () => {
  let seed = 3;
  for (const L of [40, 133]) {
    for (const B of [5, 17, L - 1, L]) {
      const r = seededRandom(seed++);
      const layers = [randomAttentionLayer(r, shape, L, 1), randomAttentionLayer(r, shape, L, 1)];
      const kept = keptBy(new KNorm(B), layers, B);
      layers.forEach((x, l) => {
        for (let h = 0; h < shape.numKvHeads; h++) assert.deepEqual(Array.from(kept[l]![h]!), knormReference(x, h, B), `L ${L} B ${B} layer ${l} head ${h}`);
      });
    }
  }
  assert.equal(knormEntry.create({ budget: 9, promptLength: 100, maxNewTokens: 8, shape, maxPositionEmbeddings: 4096, blockSlots: 16 }, {}).eviction!.windowSize, 0);
});

test('tova keeps one set per layer: the last query\'s attention averaged over all query heads, last token forced (brute force)', () => {
  let seed = 20;
  for (const L of [30, 121]) {
    for (const B of [4, 16, L - 1]) {
      const r = seededRandom(seed++);
      const layers = [randomAttentionLayer(r, shape, L, 1), randomAttentionLayer(r, shape, L, 1)];
      const kept = keptBy(new Tova(B), layers, B);
      layers.forEach((x, l) => {
        const want = tovaReference(x, B);
        assert.ok(want.includes(L - 1), 'the last token is kept');
        for (let h = 0; h < shape.numKvHeads; h++) assert.deepEqual(Array.from(kept[l]![h]!), want, `L ${L} B ${B} layer ${l} head ${h}`);
      });
    }
  }
  assert.equal(new Tova(8).windowSize, 1);
  assert.equal(G, 3);
});

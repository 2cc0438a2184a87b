import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SnapKV, snapkvEntry } from '../../src/compress/snapkv.ts';
import type { ModelShape } from '../../src/compress/press.ts';
import type { MethodContext, OptionValues } from '../../src/compress/method.ts';
import { UsageError } from '../../src/errors.ts';
import { attentionLayerView, densePlanContext, randomAttentionLayer, seededRandom } from './helpers.ts';
import type { DenseAttentionLayer } from './helpers.ts';

const shape: ModelShape = { numLayers: 2, numHeads: 6, numKvHeads: 2, headDim: 16 };

// ---- brute force from ALGORITHMS.md (no code shared with the implementation) -----------------

/** Kept slots of one stored head: mean window attention over `qHeads`, pooled, top-(B - W) + window. */
function referenceKeep(x: DenseAttentionLayer, qHeads: number[], W: number, B: number, kernel: number, pooling: string): number[] {
  const L = x.length;
  if (B >= L) return Array.from({ length: L }, (_, i) => i);
  const w = Math.min(W, B, x.rows, L);
  const n = L - w;
  const s: number[] = new Array(n).fill(0);
  for (const qh of qHeads) {
    for (let r = x.rows - w; r < x.rows; r++) {
      for (let j = 0; j < n; j++) s[j] += x.probs[qh]![r * L + j]!;
    }
  }
  for (let j = 0; j < n; j++) s[j] /= w * qHeads.length;
  const half = (kernel - 1) / 2;
  const pooled = s.map((_, i) => {
    const vals: number[] = [];
    for (let o = -half; o <= half; o++) vals.push(i + o >= 0 && i + o < n ? s[i + o]! : pooling === 'avg' ? 0 : -Infinity);
    return Math.fround(pooling === 'avg' ? vals.reduce((a, b) => a + b, 0) / kernel : Math.max(...vals));
  });
  const order = pooled.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  const kept = order.slice(0, B - w).map(([, i]) => i);
  for (let j = n; j < L; j++) kept.push(j);
  return kept.sort((a, b) => a - b);
}

function opts(o: Partial<Record<string, number | string>> = {}): OptionValues {
  return { window: 32, kernel: 7, pooling: 'avg', gqa: 'expand', ...o };
}

function ctxFor(budget: number, promptLength: number): MethodContext {
  return { budget, promptLength, maxNewTokens: 16, shape, maxPositionEmbeddings: 4096, blockSlots: 16 };
}

function make(budget: number, o: Partial<Record<string, number | string>>): SnapKV {
  const ev = snapkvEntry.create(ctxFor(budget, 0), opts(o)).eviction;
  assert.ok(ev instanceof SnapKV);
  return ev;
}

/** Run the method over both layers and compare every head with the reference. */
function check(seed: number, L: number, rows: number, budget: number, o: Partial<Record<string, number | string>>): number[][][] {
  const r = seededRandom(seed);
  const expand = (o.gqa ?? 'expand') === 'expand';
  const layers = [randomAttentionLayer(r, shape, L, rows), randomAttentionLayer(r, shape, L, rows)];
  const ev = make(budget, o);
  assert.equal(ev.expandGqa, expand);
  const scores = layers.map((x, l) => ev.score(attentionLayerView(x, l, expand)));
  const heads = expand ? shape.numHeads : shape.numKvHeads;
  const kept = ev.plan(scores, densePlanContext(shape, layers.map(() => new Array(heads).fill(L)), budget));
  const G = shape.numHeads / shape.numKvHeads;
  const W = (o.window as number | undefined) ?? 32;
  const out: number[][][] = [];
  for (let l = 0; l < layers.length; l++) {
    assert.equal(kept[l]!.length, heads);
    out.push([]);
    for (let h = 0; h < heads; h++) {
      const qHeads = expand ? [h] : Array.from({ length: G }, (_, g) => h * G + g);
      const want = referenceKeep(layers[l]!, qHeads, W, budget, (o.kernel as number | undefined) ?? 7, (o.pooling as string | undefined) ?? 'avg');
      assert.deepEqual(Array.from(kept[l]![h]!), want, `seed ${seed} L ${L} B ${budget} layer ${l} head ${h} ${JSON.stringify(o)}`);
      out[l]!.push(want);
    }
  }
  return out;
}

test('snapkv matches the brute force per KV head (gqa=group), several lengths, budgets below/at/above L', () => {
  let seed = 1;
  for (const L of [45, 77, 131]) {
    for (const budget of [40, Math.floor(L / 2), L - 1, L, L + 9]) {
      for (const pooling of ['avg', 'max']) check(seed++, L, 32, budget, { gqa: 'group', pooling });
    }
  }
});

test('snapkv matches the brute force per query head (gqa=expand), other window and kernel', () => {
  let seed = 100;
  for (const L of [33, 70, 119]) {
    for (const budget of [20, L - 3, L, L + 1]) {
      for (const kernel of [1, 5, 7]) check(seed++, L, 16, budget, { gqa: 'expand', window: 16, kernel, pooling: kernel === 5 ? 'max' : 'avg' });
    }
  }
});

test('snapkv keeps all slots when the budget covers the prompt, and the window always', () => {
  const kept = check(7, 90, 32, 90, { gqa: 'group' });
  for (const layer of kept) for (const head of layer) assert.equal(head.length, 90);
  const some = check(8, 90, 32, 50, { gqa: 'group' });
  for (const layer of some) {
    for (const head of layer) {
      assert.equal(head.length, 50);
      for (let j = 90 - 32; j < 90; j++) assert.ok(head.includes(j), `window slot ${j} kept`);
    }
  }
});

test('snapkv expand mode keeps different sets for query heads of one group', () => {
  const kept = check(11, 131, 32, 48, { gqa: 'expand' });
  const G = shape.numHeads / shape.numKvHeads;
  let differing = 0;
  for (const layer of kept) {
    for (let kv = 0; kv < shape.numKvHeads; kv++) {
      const sets = layer.slice(kv * G, (kv + 1) * G).map((s) => s.join(','));
      if (new Set(sets).size > 1) differing++;
    }
  }
  assert.ok(differing > 0, 'query heads of a group picked identical sets everywhere');
});

test('snapkv with a budget below the window keeps the last B slots', () => {
  const kept = check(12, 60, 32, 10, { gqa: 'group' });
  for (const layer of kept) for (const head of layer) assert.deepEqual(head, Array.from({ length: 10 }, (_, i) => 50 + i));
});

test('snapkv entry: window, eviction threshold, GQA flag and option checks', () => {
  const ev = make(256, { gqa: 'group' });
  assert.equal(ev.windowSize, 32);
  assert.equal(ev.minLengthToEvict, 256);
  assert.equal(ev.expandGqa, false);
  assert.equal(make(256, {}).expandGqa, true);
  assert.equal(snapkvEntry.options['gqa']!.default, 'expand');
  assert.equal(make(8, {}).windowSize, 8);
  assert.throws(() => make(256, { kernel: 6 }), UsageError);
});

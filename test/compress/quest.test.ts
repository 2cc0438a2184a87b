import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QuestSelector, questEntry } from '../../src/compress/quest.ts';
import type { MethodContext } from '../../src/compress/method.ts';
import { denseSelectView, selectorRandom } from './helpers.ts';

// ---- reference from the formula (dense arrays, no code shared with the implementation) -------

/**
 * Quest as the authors' evaluation code reads pages: bound sum_i max(q_i min_i, q_i max_i) per
 * query head ('head'; 'group': max over the group), the top min(max(minPages, floor(B/P)), pages).
 * Returns null when every page is wanted, one list per query head for 'head' with a group.
 */
function questReference(q: number[][], keys: number[][], B: number, P: number, gqa: 'head' | 'group' = 'head', minPages = 3): number[] | number[][] | null {
  const n = keys.length;
  const d = q[0]!.length;
  const pages = Math.ceil(n / P);
  const want = Math.max(minPages, Math.floor(B / P));
  if (B >= n || want >= pages) return null;
  const pageMinMax = Array.from({ length: pages }, (_, p) => {
    const rows = keys.slice(p * P, Math.min(n, (p + 1) * P));
    return {
      mn: Array.from({ length: d }, (_, i) => Math.min(...rows.map((k) => k[i]!))),
      mx: Array.from({ length: d }, (_, i) => Math.max(...rows.map((k) => k[i]!))),
    };
  });
  const bound = (qg: number[], p: number) => {
    let u = 0;
    for (let i = 0; i < d; i++) u += Math.max(qg[i]! * pageMinMax[p]!.mn[i]!, qg[i]! * pageMinMax[p]!.mx[i]!);
    return u;
  };
  const pick = (bounds: number[]) => {
    const order = bounds.map((_, p) => p).sort((a, b) => bounds[b]! - bounds[a]! || a - b);
    const chosen = order.slice(0, want).sort((a, b) => a - b);
    const slots: number[] = [];
    for (const p of chosen) for (let s = p * P; s < Math.min(n, (p + 1) * P); s++) slots.push(s);
    return slots;
  };
  if (gqa === 'group' || q.length === 1) return pick(Array.from({ length: pages }, (_, p) => Math.max(...q.map((qg) => bound(qg, p)))));
  return q.map((qg) => pick(Array.from({ length: pages }, (_, p) => bound(qg, p))));
}

const vec = (r: () => number, d: number, scale: number) => Array.from({ length: d }, () => Math.fround((r() * 2 - 1) * scale));

function asArray(x: Int32Array | Int32Array[] | null): number[] | number[][] | null {
  if (x === null) return null;
  return Array.isArray(x) ? x.map((l) => Array.from(l)) : Array.from(x);
}

const quest = (budget: number, page: number, gqa: 'head' | 'group' = 'head', minPages = 3) => new QuestSelector({ budget, page, minPages, denseLayers: 0, gqa });

test('quest matches the brute-force page bound per query head and per group, odd lengths, budgets below and above length', () => {
  const r = selectorRandom(11);
  const d = 16;
  let selected = 0;
  for (const gqa of ['head', 'group'] as const) {
    for (const group of [3, 1]) {
      for (const P of [16, 5]) {
        for (const n of [1, 9, 37, 100, 161]) {
          for (let h = 0; h < 2; h++) {
            // Each stored head has its own key scale, as KV heads of one layer differ.
            const keys = Array.from({ length: n }, () => vec(r, d, 0.5 + 2 * h));
            const q = Array.from({ length: group }, () => vec(r, d, 1));
            for (const B of [1, 8, 17, 40, n - 1, n, n + 3]) {
              if (B < 1) continue;
              const { view, reads } = denseSelectView(q, keys, P);
              const got = quest(B, P, gqa).select(view);
              const want = questReference(q, keys, B, P, gqa);
              assert.deepEqual(asArray(got), want, `gqa=${gqa} group=${group} P=${P} n=${n} h=${h} B=${B}`);
              if (B >= n) assert.equal(got, null);
              if (got) {
                selected++;
                assert.equal(reads.summaryBytes, Math.ceil(n / P) * 2 * d * 4);
                assert.equal(reads.kBytes, 0);
                if (gqa === 'head' && group > 1) assert.ok(Array.isArray(got) && got.length === group, 'one list per query head');
              }
            }
          }
        }
      }
    }
  }
  assert.ok(selected > 40, 'most cases must actually select');
});

test('quest reads at least 3 pages, and none are chosen in the first two (dense) layers', () => {
  const r = selectorRandom(7);
  const keys = Array.from({ length: 200 }, () => vec(r, 8, 1));
  const q = [vec(r, 8, 1)];
  const got = quest(16, 16).select(denseSelectView(q, keys, 16).view) as Int32Array;
  assert.equal(got.length, 3 * 16, 'budget 16 of page 16 still reads 3 pages');
  const dense = new QuestSelector({ budget: 16, page: 16, minPages: 3, denseLayers: 2, gqa: 'head' });
  for (const layer of [0, 1]) assert.equal(dense.select({ ...denseSelectView(q, keys, 16).view, layer }), null, `layer ${layer} is dense`);
  assert.ok(dense.select({ ...denseSelectView(q, keys, 16).view, layer: 2 }) !== null);
});

test('quest reads the page holding the key aligned with the query', () => {
  const r = selectorRandom(5);
  const d = 32;
  const n = 203;
  const keys = Array.from({ length: n }, () => vec(r, d, 0.1));
  const q = [vec(r, d, 1), vec(r, d, 1)];
  keys[150] = q[1]!.map((x) => x * 5); // one strong key for the second query head only
  const { view } = denseSelectView(q, keys, 16);
  // The second query head reads the page holding its key (among its 3 pages); per-group max too.
  const perHead = quest(16, 16).select(view) as Int32Array[];
  assert.ok(Array.from(perHead[1]!).includes(150));
  const group = Array.from(quest(16, 16, 'group').select(view) as Int32Array);
  assert.ok(group.includes(150));
});

test('quest entry: the authors\' defaults (page 16, 3 pages at least, two dense layers, pages per query head)', () => {
  const ctx: MethodContext = {
    budget: 32, promptLength: 100, maxNewTokens: 8, blockSlots: 16, maxPositionEmbeddings: 4096,
    shape: { numLayers: 4, numHeads: 4, numKvHeads: 2, headDim: 8 },
  };
  const defaults = Object.fromEntries(Object.entries(questEntry.options).map(([k, v]) => [k, v.default]));
  assert.deepEqual(defaults, { page: 16, min_pages: 3, dense_layers: 2, gqa: 'head' });
  const sel = questEntry.create(ctx, defaults).selector!;
  assert.equal(sel.summaryPage, 16);
  const r = selectorRandom(3);
  const keys = Array.from({ length: 90 }, () => vec(r, 8, 1));
  const q = [vec(r, 8, 1), vec(r, 8, 1)];
  assert.deepEqual(asArray(sel.select({ ...denseSelectView(q, keys, 16).view, layer: 2 })), questReference(q, keys, 32, 16));
});

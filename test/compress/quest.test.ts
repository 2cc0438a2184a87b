import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QuestSelector, questEntry } from '../../src/compress/quest.ts';
import type { MethodContext } from '../../src/compress/method.ts';
import { denseSelectView, selectorRandom } from './helpers.ts';

// ---- reference from the formula (dense arrays, no code shared with the implementation) -------

/** Quest: page bound sum_i max(q_i min_i, q_i max_i), max over the group, top ceil(B/P) pages. */
function questReference(q: number[][], keys: number[][], B: number, P: number): number[] | null {
  const n = keys.length;
  const d = q[0]!.length;
  const pages = Math.ceil(n / P);
  const want = Math.ceil(B / P);
  if (B >= n || want >= pages) return null;
  const bounds: number[] = [];
  for (let p = 0; p < pages; p++) {
    const rows = keys.slice(p * P, Math.min(n, (p + 1) * P));
    const mn = Array.from({ length: d }, (_, i) => Math.min(...rows.map((k) => k[i]!)));
    const mx = Array.from({ length: d }, (_, i) => Math.max(...rows.map((k) => k[i]!)));
    let best = -Infinity;
    for (const qg of q) {
      let u = 0;
      for (let i = 0; i < d; i++) u += Math.max(qg[i]! * mn[i]!, qg[i]! * mx[i]!);
      best = Math.max(best, u);
    }
    bounds.push(best);
  }
  const order = bounds.map((_, p) => p).sort((a, b) => bounds[b]! - bounds[a]! || a - b);
  const chosen = order.slice(0, want).sort((a, b) => a - b);
  const slots: number[] = [];
  for (const p of chosen) for (let s = p * P; s < Math.min(n, (p + 1) * P); s++) slots.push(s);
  return slots;
}

const vec = (r: () => number, d: number, scale: number) => Array.from({ length: d }, () => Math.fround((r() * 2 - 1) * scale));

function asArray(x: Int32Array | null): number[] | null {
  return x === null ? null : Array.from(x);
}

test('quest matches the brute-force page bound on GQA heads, odd lengths, budgets below and above length', () => {
  const r = selectorRandom(11);
  const d = 16;
  let selected = 0;
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
            const got = new QuestSelector({ budget: B, page: P }).select(view);
            const want = questReference(q, keys, B, P);
            assert.deepEqual(asArray(got), want, `group=${group} P=${P} n=${n} h=${h} B=${B}`);
            if (B >= n) assert.equal(got, null);
            if (got) {
              selected++;
              assert.equal(reads.summaryBytes, Math.ceil(n / P) * 2 * d * 4);
              assert.equal(reads.kBytes, 0);
            }
          }
        }
      }
    }
  }
  assert.ok(selected > 20, 'most cases must actually select');
});

test('quest reads the page holding the key aligned with the query', () => {
  const r = selectorRandom(5);
  const d = 32;
  const n = 203;
  const keys = Array.from({ length: n }, () => vec(r, d, 0.1));
  const q = [vec(r, d, 1), vec(r, d, 1)];
  keys[150] = q[1]!.map((x) => x * 5); // one strong key for the second query head only
  const { view } = denseSelectView(q, keys, 16);
  const got = Array.from(new QuestSelector({ budget: 16, page: 16 }).select(view)!);
  assert.deepEqual(got, Array.from({ length: 16 }, (_, i) => 144 + i));
});

test('quest entry: default page 16, budget from the context', () => {
  const ctx: MethodContext = {
    budget: 32, promptLength: 100, maxNewTokens: 8, blockSlots: 16, maxPositionEmbeddings: 4096,
    shape: { numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 8 },
  };
  const sel = questEntry.create(ctx, { page: 16 }).selector!;
  assert.equal(sel.summaryPage, 16);
  assert.equal(questEntry.options.page!.default, 16);
  const r = selectorRandom(3);
  const keys = Array.from({ length: 90 }, () => vec(r, 8, 1));
  const q = [vec(r, 8, 1), vec(r, 8, 1)];
  assert.deepEqual(asArray(sel.select(denseSelectView(q, keys, 16).view)), questReference(q, keys, 32, 16));
});

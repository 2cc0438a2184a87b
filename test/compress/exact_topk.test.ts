import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ExactTopkSelector, exactTopkEntry } from '../../src/compress/exact_topk.ts';
import type { MethodContext } from '../../src/compress/method.ts';
import { topK } from '../../src/compress/press.ts';
import { topKSelect } from '../../src/compress/util.ts';
import { denseSelectView, selectorRandom } from './helpers.ts';

// ---- reference from the formula (dense arrays, no code shared with the implementation) -------

/** Exact softmax(q.k / sqrt(d)) per query head; each query head's own top B slots ascending (RocketKV's oracle). */
function exactReference(q: number[][], keys: number[][], B: number): number[][] | null {
  const n = keys.length;
  const d = q[0]!.length;
  if (B >= n) return null;
  return q.map((qg) => {
    const s = keys.map((k) => k.reduce((acc, x, i) => acc + x * qg[i]!, 0) / Math.sqrt(d));
    const m = Math.max(...s);
    const e = s.map((x) => Math.exp(x - m));
    const z = e.reduce((a, b) => a + b, 0);
    const p = e.map((x) => x / z);
    return p.map((_, t) => t).sort((a, b) => p[b]! - p[a]! || a - b).slice(0, B).sort((a, b) => a - b);
  });
}

/** The selector's answer as one list per query head. */
function perHead(got: Int32Array | Int32Array[] | null): number[][] | null {
  if (got === null) return null;
  return Array.isArray(got) ? got.map((x) => Array.from(x)) : [Array.from(got)];
}

const vec = (r: () => number, d: number, scale: number) => Array.from({ length: d }, () => Math.fround((r() * 2 - 1) * scale));

test('exact_topk matches the brute-force reference on GQA heads, odd lengths, budgets below and above length', () => {
  const r = selectorRandom(41);
  const d = 16;
  let selected = 0;
  for (const group of [3, 1]) {
    for (const n of [1, 17, 100, 251]) {
      for (let h = 0; h < 2; h++) {
        const keys = Array.from({ length: n }, () => vec(r, d, 0.5 + 2 * h));
        const q = Array.from({ length: group }, () => vec(r, d, 1));
        for (const B of [1, 5, 16, 64, n - 1, n, n + 2]) {
          if (B < 1) continue;
          const { view, reads } = denseSelectView(q, keys, 0);
          const got = new ExactTopkSelector({ budget: B }).select(view);
          assert.deepEqual(perHead(got), exactReference(q, keys, B), `group=${group} n=${n} h=${h} B=${B}`);
          if (got && group > 1) assert.ok(Array.isArray(got) && got.length === group, 'one set per query head');
          if (got) {
            selected++;
            assert.equal(reads.kBytes, n * d * 4);
          }
        }
      }
    }
  }
  assert.ok(selected > 20);
});

test('exact_topk entry uses the context budget and needs no summaries', () => {
  const sel = exactTopkEntry.create({ budget: 3 } as MethodContext, {}).selector!;
  assert.equal(sel.summaryPage, 0);
  const r = selectorRandom(6);
  const keys = Array.from({ length: 40 }, () => vec(r, 8, 1));
  const q = [vec(r, 8, 1), vec(r, 8, 1)];
  assert.deepEqual(perHead(sel.select(denseSelectView(q, keys, 0).view)), exactReference(q, keys, 3));
});

test('topKSelect (util) agrees with press.ts topK, ties included', () => {
  const r = selectorRandom(77);
  for (const n of [1, 2, 3, 10, 97, 1000]) {
    for (const levels of [2, 5, 0]) {
      // levels > 0: few distinct values, so ties straddle the k-th place; 0: distinct values.
      const x = Float64Array.from({ length: n }, () => (levels ? Math.floor(r() * levels) : r()));
      if (n > 3) { x[1] = -Infinity; x[2] = Infinity; }
      for (const k of [0, 1, 2, Math.floor(n / 2), n - 1, n, n + 1]) {
        assert.deepEqual(Array.from(topKSelect(x, k)), Array.from(topK(x, k)), `n=${n} levels=${levels} k=${k}`);
      }
    }
  }
});

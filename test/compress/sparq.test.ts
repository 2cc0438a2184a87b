import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SparqSelector, sparqEntry } from '../../src/compress/sparq.ts';
import type { MethodContext } from '../../src/compress/method.ts';
import { denseSelectView, selectorRandom } from './helpers.ts';

// ---- reference from the formula (dense arrays, no code shared with the implementation) -------

/** Indices of the k largest values, ties to the lower index, ascending. */
function topIndices(x: number[], k: number): number[] {
  return x.map((_, i) => i).sort((a, b) => x[b]! - x[a]! || a - b).slice(0, k).sort((a, b) => a - b);
}

/**
 * SparQ: channels = top-r of sum_g |q_g|, approximate scores on them, softmax with temperature
 * sqrt(d * sum|q_r| / sum|q|) per query head, summed over the group; top k = B/2 tokens;
 * r = floor(d * k / n) in [1, d] unless fixed.
 */
function sparqReference(q: number[][], keys: number[][], B: number, fixedR = 0): { slots: number[] | null; r: number } {
  const n = keys.length;
  const d = q[0]!.length;
  const k = Math.max(1, Math.floor(B / 2));
  if (B >= n) return { slots: null, r: 0 };
  const r = fixedR > 0 ? Math.min(d, fixedR) : Math.min(d, Math.max(1, Math.floor((d * k) / n)));
  const absSum = Array.from({ length: d }, (_, i) => q.reduce((s, qg) => s + Math.abs(qg[i]!), 0));
  const ch = topIndices(absSum, r);
  const total = new Array<number>(n).fill(0);
  for (const qg of q) {
    const all = qg.reduce((s, x) => s + Math.abs(x), 0);
    const part = ch.reduce((s, i) => s + Math.abs(qg[i]!), 0);
    const temp = Math.sqrt((d * part) / all);
    const s = keys.map((key) => ch.reduce((acc, i) => acc + qg[i]! * key[i]!, 0) / temp);
    const m = Math.max(...s);
    const e = s.map((x) => Math.exp(x - m));
    const z = e.reduce((a, b) => a + b, 0);
    e.forEach((x, t) => { total[t] = total[t]! + x / z; });
  }
  return { slots: topIndices(total, k), r };
}

const vec = (r: () => number, d: number, scale: number) => Array.from({ length: d }, () => Math.fround((r() * 2 - 1) * scale));

test('sparq matches the brute-force reference on GQA heads, odd lengths, budgets below and above length', () => {
  const r = selectorRandom(21);
  const d = 32;
  let selected = 0;
  for (const group of [3, 1]) {
    for (const n of [1, 2, 23, 100, 257]) {
      for (let h = 0; h < 2; h++) {
        const keys = Array.from({ length: n }, () => vec(r, d, 0.5 + 2 * h));
        const q = Array.from({ length: group }, () => vec(r, d, 1));
        for (const B of [1, 2, 7, 64, n - 1, n, n + 9]) {
          if (B < 1) continue;
          for (const fixedR of [0, 5]) {
            const { view, reads } = denseSelectView(q, keys, 0);
            const got = new SparqSelector({ budget: B, r: fixedR }).select(view);
            const want = sparqReference(q, keys, B, fixedR);
            assert.deepEqual(got === null ? null : Array.from(got), want.slots, `group=${group} n=${n} h=${h} B=${B} r=${fixedR}`);
            if (got) {
              selected++;
              assert.equal(got.length, Math.max(1, Math.floor(B / 2)));
              assert.equal(reads.kBytes, n * want.r * 4);
            } else {
              assert.ok(B >= n);
            }
          }
        }
      }
    }
  }
  assert.ok(selected > 20);
});

test('sparq: the automatic r reads about as many floats as B/2 full keys', () => {
  const r = selectorRandom(4);
  const d = 64;
  const n = 1000;
  const keys = Array.from({ length: n }, () => vec(r, d, 1));
  const q = [vec(r, d, 1), vec(r, d, 1)];
  const B = 200;
  const { view, reads } = denseSelectView(q, keys, 0);
  sparqEntry.create({ budget: B } as MethodContext, { r: 0 }).selector!.select(view);
  const readFloats = reads.kBytes / 4;
  assert.ok(readFloats <= (B / 2) * d && readFloats > (B / 2) * d - n, `read ${readFloats} floats`);
});

test('sparq finds a dominant key through its large channels', () => {
  const r = selectorRandom(8);
  const d = 32;
  const n = 300;
  const keys = Array.from({ length: n }, () => vec(r, d, 0.2));
  const q = [vec(r, d, 0.05)];
  q[0]![3] = 4; q[0]![17] = -4;
  keys[211]![3] = 3; keys[211]![17] = -3;
  const got = new SparqSelector({ budget: 4, r: 0 }).select(denseSelectView(q, keys, 0).view)!;
  assert.ok(Array.from(got).includes(211));
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HybridSelector, hybridEntry } from '../../src/compress/hybrid.ts';
import { rocketkvSplit } from '../../src/compress/budget.ts';
import type { MethodContext } from '../../src/compress/method.ts';
import { denseSelectView, selectorRandom } from './helpers.ts';

// ---- reference from the pseudo-code in ALGORITHMS.md (dense arrays, nothing shared) ---------

interface Knobs { page: number; r: number; topk: number; localWindow: number; budget: number }

/**
 * RocketKV stage 2 as rocket.py: page min/max, top-r channels of sum_g |Qg|, side by the sign of
 * sum_g Qg, per-head SparQ temperature; every token carries its page's score, softmax over TOKENS,
 * sum over the group; exactly the top-k tokens (ties to the lower slot) are read, plus the last
 * localWindow slots. Null when n <= budget or everything is selected.
 */
function hybridReference(q: number[][], keys: number[][], o: Knobs): number[] | null {
  const n = keys.length;
  const d = q[0]!.length;
  if (n <= o.budget || n <= o.topk) return null;
  const P = o.page;
  const pages = Math.ceil(n / P);
  const mn: number[][] = [];
  const mx: number[][] = [];
  for (let p = 0; p < pages; p++) {
    const rows = keys.slice(p * P, Math.min(n, (p + 1) * P));
    mn.push(Array.from({ length: d }, (_, i) => Math.min(...rows.map((k) => k[i]!))));
    mx.push(Array.from({ length: d }, (_, i) => Math.max(...rows.map((k) => k[i]!))));
  }
  const absSum = Array.from({ length: d }, (_, i) => q.reduce((s, qg) => s + Math.abs(qg[i]!), 0));
  const ch = absSum.map((_, i) => i).sort((a, b) => absSum[b]! - absSum[a]! || a - b).slice(0, o.r);
  const useMax = ch.map((i) => q.reduce((s, qg) => s + qg[i]!, 0) > 0);
  const tokenScore = new Array<number>(n).fill(0);
  for (const qg of q) {
    const all = qg.reduce((s, x) => s + Math.abs(x), 0);
    const part = ch.reduce((s, i) => s + Math.abs(qg[i]!), 0);
    const temp = Math.sqrt((d * part) / all);
    const s = mn.map((_, p) => ch.reduce((acc, i, j) => acc + qg[i]! * (useMax[j] ? mx[p]![i]! : mn[p]![i]!), 0) / temp);
    const tokens = keys.map((_, t) => s[Math.floor(t / P)]!);
    const m = Math.max(...tokens);
    const e = tokens.map((x) => Math.exp(x - m));
    const z = e.reduce((a, b) => a + b, 0);
    e.forEach((x, t) => { tokenScore[t] = tokenScore[t]! + x / z; });
  }
  const topTokens = new Set(tokenScore.map((_, t) => t).sort((a, b) => tokenScore[b]! - tokenScore[a]! || a - b).slice(0, o.topk));
  const slots: number[] = [];
  for (let t = 0; t < n; t++) if (topTokens.has(t) || t >= n - o.localWindow) slots.push(t);
  return slots.length === n ? null : slots;
}

const vec = (r: () => number, d: number, scale: number) => Array.from({ length: d }, () => Math.fround((r() * 2 - 1) * scale));

test('hybrid matches the brute-force stage-2 reference on GQA heads, partial pages, budgets below and above length', () => {
  const r = selectorRandom(31);
  const d = 16;
  let selected = 0;
  let partialLastPage = 0;
  for (const group of [3, 1]) {
    for (const page of [3, 16]) {
      for (const n of [2, 31, 100, 203]) {
        for (let h = 0; h < 2; h++) {
          const keys = Array.from({ length: n }, () => vec(r, d, 0.5 + 2 * h));
          const q = Array.from({ length: group }, () => vec(r, d, 1));
          for (const topk of [1, 8, 20, 50, n - 1, n, n + 4]) {
            for (const [rr, localWindow] of [[4, 0], [16, 0], [7, 5]] as const) {
              if (topk < 1) continue;
              const knobs = { page, r: rr, topk, localWindow, budget: topk };
              const { view, reads } = denseSelectView(q, keys, page);
              const got = new HybridSelector(knobs).select(view);
              const want = hybridReference(q, keys, knobs);
              const label = `group=${group} page=${page} n=${n} h=${h} topk=${topk} r=${rr} lw=${localWindow}`;
              assert.deepEqual(got === null ? null : Array.from(got), want, label);
              if (got) {
                selected++;
                assert.equal(reads.summaryBytes, Math.ceil(n / page) * rr * 4, label);
                assert.equal(reads.kBytes, 0);
                assert.ok(got.length >= Math.min(n, topk), label);
                if (got[got.length - 1] === n - 1 && n % page !== 0) partialLastPage++;
              }
            }
          }
        }
      }
    }
  }
  assert.ok(selected > 50, `selected in ${selected} cases`);
  assert.ok(partialLastPage > 3, 'the partial last page must be chosen in some cases');
});

test('hybrid: a head no longer than its budget is read whole even when topk is smaller', () => {
  const r = selectorRandom(2);
  const keys = Array.from({ length: 90 }, () => vec(r, 8, 1));
  const q = [vec(r, 8, 1), vec(r, 8, 1)];
  const sel = new HybridSelector({ page: 3, r: 4, topk: 45, localWindow: 0, budget: 90 });
  assert.equal(sel.select(denseSelectView(q, keys, 3).view), null);
  const sel2 = new HybridSelector({ page: 3, r: 4, topk: 45, localWindow: 0, budget: 89 });
  assert.notEqual(sel2.select(denseSelectView(q, keys, 3).view), null);
});

test('hybrid entry takes page, r and topk from the RocketKV split unless set', () => {
  const shape = { numLayers: 2, numHeads: 6, numKvHeads: 2, headDim: 128 };
  const ctx: MethodContext = { budget: 256, promptLength: 16000, maxNewTokens: 128, blockSlots: 16, maxPositionEmbeddings: 131072, shape };
  const split = rocketkvSplit({ promptLength: 16000, maxNewTokens: 128, budget: 256, headDim: 128, modelMaxLen: 131072 });
  const sel = hybridEntry.create(ctx, { page: 0, r: 0, topk: 0, local_window: 0 }).selector as HybridSelector;
  assert.deepEqual([sel.summaryPage, sel.r, sel.topk, sel.localWindow, sel.budget], [split.page, split.r, split.topk, 0, 256]);
  const set = hybridEntry.create(ctx, { page: 8, r: 20, topk: 64, local_window: 4 }).selector as HybridSelector;
  assert.deepEqual([set.summaryPage, set.r, set.topk, set.localWindow], [8, 20, 64, 4]);
  // Through the entry, the selection agrees with the reference at the split's knobs.
  const r = selectorRandom(9);
  const n = 700;
  const keys = Array.from({ length: n }, () => vec(r, 128, 1));
  const q = Array.from({ length: 3 }, () => vec(r, 128, 1));
  const got = sel.select(denseSelectView(q, keys, split.page).view);
  assert.deepEqual(got === null ? null : Array.from(got),
    hybridReference(q, keys, { page: split.page, r: split.r, topk: split.topk, localWindow: 0, budget: 256 }));
});

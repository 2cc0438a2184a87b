import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Runtime } from '../../src/runtime/wasm.ts';
import { HybridSelector, hybridPageScores } from '../../src/compress/hybrid.ts';
import { QuestSelector } from '../../src/compress/quest.ts';
import { denseSelectView, selectorRandom } from './helpers.ts';
import { PageSummary } from '../../src/kv/summary.ts';
import { makeRng } from '../../src/engine/sampling.ts';

test('hybrid page scores: the wasm kernel equals the TypeScript path', async () => {
  const rt = await Runtime.create({ threads: 1 });
  try {
    const rng = makeRng(17);
    for (const [n, d, G, P, r] of [[97, 16, 3, 3, 5], [400, 64, 7, 4, 30], [33, 32, 1, 16, 32], [5, 8, 2, 3, 1]] as const) {
      const keys = Float32Array.from({ length: n * d }, () => rng() * 2 - 1);
      const summary = new PageSummary(P, d);
      summary.rebuild(keys, n);
      const q = Float32Array.from({ length: G * d }, () => rng() * 2 - 1);
      const pages = Math.ceil(n / P);
      const channels = Int32Array.from({ length: r }, (_, i) => (i * 7) % d).sort();
      const js = hybridPageScores(q, G, d, summary, pages, channels, n);
      const wasm = hybridPageScores(q, G, d, summary, pages, channels, n, rt);
      let worst = 0;
      for (let p = 0; p < pages; p++) worst = Math.max(worst, Math.abs(js[p]! - wasm[p]!));
      assert.ok(worst < 1e-12, `n=${n} d=${d} G=${G}: ${worst}`);
      // A distribution over tokens per query head: each page's value counts once per token it holds.
      let sum = 0;
      wasm.forEach((v, p) => { sum += v * Math.min(P, n - p * P); });
      assert.ok(Math.abs(sum - G) < 1e-9, 'each query head contributes a distribution over tokens');
    }
  } finally {
    await rt.close();
  }
});

test('hybrid selection: the one-kernel wasm path picks the same slots as the TypeScript path', async () => {
  const rt = await Runtime.create({ threads: 1 });
  try {
    const rand = selectorRandom(29);
    let cases = 0;
    let cut = 0;
    // [n, d, G, page, r, topk, localWindow]: partial last pages, r = d, topk not a page multiple,
    // topk one short of n, local windows overlapping the chosen pages.
    const shapes: [number, number, number, number, number, number, number][] = [
      [97, 16, 3, 3, 5, 10, 0], [400, 64, 7, 4, 30, 37, 0], [33, 32, 1, 16, 32, 20, 4], [5, 8, 2, 3, 1, 2, 0],
      [1500, 64, 7, 16, 8, 128, 0], [257, 64, 3, 8, 64, 64, 16], [64, 16, 2, 4, 4, 63, 0], [300, 16, 4, 5, 3, 299, 0],
    ];
    for (const [n, d, G, P, r, topk, localWindow] of shapes) {
      for (let rep = 0; rep < 6; rep++) {
        const keys = Array.from({ length: n }, () => Array.from({ length: d }, () => rand() * 2 - 1));
        // Repeated pages give equal scores, so the tie rules (lower page first) are exercised too.
        if (rep % 2 === 1) for (let s = P; s < n; s++) keys[s] = keys[s % P]!.slice();
        const q = Array.from({ length: G }, () => Array.from({ length: d }, () => (rand() * 2 - 1) * (rep + 1)));
        const sel = new HybridSelector({ page: P, r, topk, localWindow, budget: 0 });
        const ts = denseSelectView(q, keys, P);
        const wa = denseSelectView(q, keys, P);
        wa.view.runtime = rt;
        const a = sel.select(ts.view);
        const b = sel.select(wa.view);
        assert.deepEqual(b, a, `n=${n} d=${d} G=${G} page=${P} r=${r} topk=${topk} local=${localWindow} rep=${rep}`);
        assert.deepEqual(wa.reads, ts.reads, 'the same bytes are declared read');
        cases++;
        if (a !== null && a.length < n) cut++;
      }
    }
    assert.ok(cut >= cases - 6, `the cases select a strict subset (${cut} of ${cases})`);
  } finally {
    await rt.close();
  }
});

test('hybrid selection of many heads in one call, spread over threads, equals each head alone on the TypeScript path', async () => {
  const rt = await Runtime.create({ threads: 4 });
  try {
    const rand = selectorRandom(37);
    // One selector, heads of different lengths: short ones read whole (null), long ones cut.
    const sel = new HybridSelector({ page: 8, r: 16, topk: 64, localWindow: 8, budget: 96 });
    const d = 64;
    const G = 7;
    const lengths = [1500, 40, 977, 2049, 96, 97, 1200, 640, 3000, 15];
    const heads = lengths.map((n) => ({
      q: Array.from({ length: G }, () => Array.from({ length: d }, () => rand() * 2 - 1)),
      keys: Array.from({ length: n }, () => Array.from({ length: d }, () => rand() * 2 - 1)),
    }));
    const ts = heads.map((h) => denseSelectView(h.q, h.keys, 8));
    const wa = heads.map((h) => {
      const w = denseSelectView(h.q, h.keys, 8);
      w.view.runtime = rt;
      return w;
    });
    const alone = ts.map((t) => sel.select(t.view));
    const many = sel.selectMany(wa.map((w) => w.view));
    assert.deepEqual(many, alone);
    wa.forEach((w, i) => assert.deepEqual(w.reads, ts[i]!.reads, `head ${i}: the same bytes are declared read`));
    assert.equal(alone.filter((a) => a === null).length, 3, 'the heads of at most the budget read every slot');
    assert.ok(alone.every((a, i) => a === null || a.length < lengths[i]!));
  } finally {
    await rt.close();
  }
});

test('quest selection: the one-kernel wasm path picks the same pages as the TypeScript path, per query head and per group', async () => {
  const rt = await Runtime.create({ threads: 1 });
  try {
    const rand = selectorRandom(31);
    let cases = 0;
    // [n, d, G, page, budget]: partial last pages, fewer pages wanted than min_pages gives.
    const shapes: [number, number, number, number, number][] = [
      [97, 16, 3, 3, 20], [400, 64, 7, 4, 64], [70, 32, 1, 16, 16], [1500, 64, 3, 16, 256], [257, 64, 3, 8, 8], [300, 16, 4, 5, 100],
    ];
    for (const [n, d, G, P, budget] of shapes) {
      for (const gqa of ['head', 'group'] as const) {
        for (let rep = 0; rep < 4; rep++) {
          const keys = Array.from({ length: n }, () => Array.from({ length: d }, () => rand() * 2 - 1));
          if (rep % 2 === 1) for (let s = P; s < n; s++) keys[s] = keys[s % P]!.slice();
          const q = Array.from({ length: G }, () => Array.from({ length: d }, () => (rand() * 2 - 1) * (rep + 1)));
          const sel = new QuestSelector({ budget, page: P, minPages: 3, denseLayers: 0, gqa });
          const ts = denseSelectView(q, keys, P);
          const wa = denseSelectView(q, keys, P);
          wa.view.runtime = rt;
          const a = sel.select(ts.view);
          assert.ok(a !== null, 'the budget is below the head');
          assert.deepEqual(sel.select(wa.view), a, `n=${n} d=${d} G=${G} page=${P} budget=${budget} gqa=${gqa} rep=${rep}`);
          assert.deepEqual(wa.reads, ts.reads, 'the same bytes are declared read');
          cases++;
        }
      }
    }
    assert.equal(cases, 48);
  } finally {
    await rt.close();
  }
});

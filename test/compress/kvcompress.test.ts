import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KvCompress, kvcompressEntry } from '../../src/compress/kvcompress.ts';
import type { LayerView, ModelShape, PlanContext } from '../../src/compress/press.ts';
import { selectorRandom } from './helpers.ts';

// ---- test-side data and references (no code shared with the implementation) -----------------

const rng = selectorRandom;

interface Dense {
  shape: ModelShape;
  L: number;
  rows: number;
  q: number[][][]; // [row][queryHead][d]
  k: number[][][]; // [kvHead][slot][d]
}

/** Random prompt of L tokens; each KV head gets its own key scale so heads differ in sharpness. */
function denseLayer(r: () => number, shape: ModelShape, L: number, rows: number): Dense {
  const d = shape.headDim;
  const vec = (scale: number) => Array.from({ length: d }, () => (r() * 2 - 1) * scale);
  const q = Array.from({ length: rows }, () => Array.from({ length: shape.numHeads }, () => vec(1)));
  const k = Array.from({ length: shape.numKvHeads }, (_, h) => {
    const scale = 0.5 + 3 * h + 2 * r();
    return Array.from({ length: L }, () => vec(scale));
  });
  return { shape, L, rows, q, k };
}

/** Causal softmax of window row `row` of query head `qh` over every slot of KV head h. */
function softmaxRow(x: Dense, qh: number, h: number, row: number): number[] {
  const d = x.shape.headDim;
  const qPos = x.L - x.rows + row;
  const logits = x.k[h]!.map((key, j) => (j > qPos ? -Infinity : key.reduce((s, v, i) => s + v * x.q[row]![qh]![i]!, 0) / Math.sqrt(d)));
  const mx = Math.max(...logits);
  const e = logits.map((v) => (v === -Infinity ? 0 : Math.exp(v - mx)));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / z);
}

function viewOf(x: Dense, layer: number): LayerView {
  const G = x.shape.numHeads / x.shape.numKvHeads;
  const d = x.shape.headDim;
  const wq = new Float32Array(x.rows * x.shape.numHeads * d);
  x.q.forEach((row, r) => row.forEach((v, qh) => wq.set(v, (r * x.shape.numHeads + qh) * d)));
  return {
    layer,
    shape: x.shape,
    heads: x.shape.numKvHeads,
    group: G,
    promptLength: x.L,
    length: () => x.L,
    positions: () => Int32Array.from({ length: x.L }, (_, j) => j),
    keys: (h) => Float32Array.from(x.k[h]!.flat()),
    windowQueries: wq,
    windowRows: x.rows,
    windowProbs: (h, w) => {
      const out = new Float32Array(G * w * x.L);
      for (let g = 0; g < G; g++) {
        for (let i = 0; i < w; i++) out.set(softmaxRow(x, h * G + g, h, x.rows - w + i), (g * w + i) * x.L);
      }
      return out;
    },
  };
}

/** M[j] = sum_g pool_g(sum_i A[g,i,j]^2) over the last w rows, straight from the formula. */
function bruteMetric(x: Dense, h: number, w: number, kernel: number): number[] {
  const G = x.shape.numHeads / x.shape.numKvHeads;
  const M = new Array<number>(x.L).fill(0);
  for (let g = 0; g < G; g++) {
    const s = new Array<number>(x.L).fill(0);
    for (let i = x.rows - w; i < x.rows; i++) {
      const p = softmaxRow(x, h * G + g, h, i).map((v) => Math.fround(v));
      for (let j = 0; j < x.L; j++) s[j] += p[j]! * p[j]!;
    }
    const half = (kernel - 1) / 2;
    for (let j = 0; j < x.L; j++) {
      let m = -Infinity;
      for (let t = j - half; t <= j + half; t++) if (t >= 0 && t < x.L) m = Math.max(m, s[t]!);
      M[j] += kernel > 1 ? m : s[j]!;
    }
  }
  return M;
}

interface Seq {
  metrics: number[][][];
  lengths: number[][];
  positions: number[][][];
  tokensSeen: number;
}

/**
 * The fork's formulation: walk every finite-metric slot of the sequence in one ascending order
 * (metric, head, slot); a head frees a block when a_g (then `block`) of its slots have been
 * passed; stop after E blocks. A head's last block is never freed. null = nothing evicted.
 */
function bruteKeep(s: Seq, P: number, budget: number, B: number): number[][][] | null {
  type Head = { l: number; h: number; n: number; m: number[] };
  const heads: Head[] = [];
  s.lengths.forEach((row, l) => row.forEach((n, h) => heads.push({
    // The fork protects P positions counting the newest token, which is not cached yet: P - 1 cached ones.
    l, h, n, m: s.metrics[l]![h]!.slice(0, n).map((v, j) => (s.positions[l]![h]![j]! > s.tokensSeen - P ? Infinity : v)),
  })));
  const N = heads.length;
  const slots = heads.reduce((a, x) => a + x.n, 0);
  // The scheduler rounds the per-head budget up to whole blocks.
  const C = Math.ceil(budget / B) * B;
  if (slots <= C * N) return null;
  const E = heads.reduce((a, x) => a + Math.ceil(x.n / B), 0) - (C * N) / B;
  if (E <= 0) return null;
  const walk: { v: number; g: number; j: number }[] = [];
  heads.forEach((x, g) => x.m.forEach((v, j) => { if (v !== Infinity) walk.push({ v, g, j }); }));
  walk.sort((a, b) => a.v - b.v || a.g - b.g || a.j - b.j);
  const need = heads.map((x) => (x.n % B === 0 ? B : x.n % B));
  const freed = heads.map(() => 0);
  let total = 0;
  for (const it of walk) {
    if (total === E) break;
    if (--need[it.g]! === 0) {
      if (freed[it.g]! + 1 < Math.ceil(heads[it.g]!.n / B)) { freed[it.g]!++; total++; need[it.g] = B; }
      else need[it.g] = Infinity;
    }
  }
  if (total === 0) return null;
  const out: number[][][] = s.lengths.map((row) => row.map(() => []));
  heads.forEach((x, g) => {
    const cnt = freed[g]! === 0 ? 0 : (freed[g]! - 1) * B + (x.n % B === 0 ? B : x.n % B);
    const order = x.m.map((_, j) => j).sort((a, b) => x.m[a]! - x.m[b]! || a - b);
    // Protected (+inf) slots sort last; NaN from inf-inf falls back to the index order above.
    const gone = new Set(order.slice(0, cnt));
    out[x.l]![x.h] = Array.from({ length: x.n }, (_, j) => j).filter((j) => !gone.has(j));
  });
  return out;
}

function ctxOf(s: Seq, shape: ModelShape, budget: number, B: number): PlanContext {
  return {
    shape, budget, blockSlots: B,
    lengths: s.lengths.map((r) => [...r]),
    positions: s.positions.map((r) => r.map((p) => Int32Array.from(p))),
    tokensSeen: s.tokensSeen,
  };
}

const asLists = (k: Int32Array[][]): number[][][] => k.map((r) => r.map((a) => Array.from(a)));
const make = (o: Partial<{ metricWindow: number; pooling: 'none' | 'max'; protectedWindow: number; continual: boolean }> = {}) =>
  new KvCompress({ metricWindow: 32, pooling: 'none', protectedWindow: 32, continual: true, ...o });

// ---- tests ----------------------------------------------------------------------------------

test('metric equals the brute-force squared-attention sum (GQA 6/2, pooling none and max)', () => {
  const r = rng(1);
  const shape: ModelShape = { numLayers: 1, numHeads: 6, numKvHeads: 2, headDim: 8 };
  for (const L of [9, 17, 40, 77]) {
    const x = denseLayer(r, shape, L, Math.min(L, 12));
    for (const [w, pooling] of [[4, 'none'], [12, 'none'], [32, 'max'], [5, 'max']] as const) {
      const got = make({ metricWindow: w, pooling }).score(viewOf(x, 0));
      for (let h = 0; h < 2; h++) {
        const want = bruteMetric(x, h, Math.min(w, x.rows), pooling === 'max' ? 7 : 1);
        assert.equal(got[h]!.length, L);
        want.forEach((v, j) => assert.ok(Math.abs(got[h]![j]! - v) <= 1e-6 * Math.max(1, v), `L=${L} w=${w} ${pooling} h=${h} j=${j}: ${got[h]![j]} vs ${v}`));
      }
    }
  }
});

test('score + plan pick the same slots as the brute-force walk; budget is an average within one block', () => {
  const r = rng(2);
  const layers = 3;
  const shape: ModelShape = { numLayers: layers, numHeads: 6, numKvHeads: 2, headDim: 8 };
  let unequal = 0;
  let evicting = 0;
  for (const L of [23, 48, 100, 131]) {
    const views = Array.from({ length: layers }, (_, l) => viewOf(denseLayer(r, shape, L, Math.min(L, 16)), l));
    for (const B of [16, 8]) {
      for (const P of [0, 4, 32]) {
        for (const budget of [8, 20, 40, 64, L - 1, L, L + 5, 1000]) {
          const m = make({ metricWindow: 16, protectedWindow: P, pooling: P === 4 ? 'max' : 'none' });
          const scores = views.map((v) => m.score(v));
          const s: Seq = {
            metrics: scores.map((row) => row.map((a) => Array.from(a))),
            lengths: views.map(() => [L, L]),
            positions: views.map(() => [0, 1].map(() => Array.from({ length: L }, (_, j) => j))),
            tokensSeen: L,
          };
          const kept = m.plan(scores, ctxOf(s, shape, budget, B));
          const tag = `L=${L} B=${B} P=${P} budget=${budget}`;
          const want = bruteKeep(s, P, budget, B) ?? s.lengths.map((row) => row.map((n) => Array.from({ length: n }, (_, j) => j)));
          assert.deepEqual(asLists(kept), want, tag);
          const N = layers * 2;
          const lens = kept.flat().map((k) => k.length);
          for (const k of kept.flat()) {
            for (let i = 1; i < k.length; i++) assert.ok(k[i - 1]! < k[i]!, `${tag}: ascending unique`);
            for (let j = Math.max(0, L - Math.max(0, P - 1)); j < L; j++) assert.ok(k.includes(j), `${tag}: protected slot ${j} evicted`);
          }
          const total = lens.reduce((a, b) => a + b, 0);
          if (budget >= L) assert.equal(total, N * L, `${tag}: budget covers the prompt, keep all`);
          // Reachable budget: every head can shrink to < P + B slots, i.e. ceil((P+B-1)/B) blocks.
          // The per-head budget is rounded up to whole blocks (C), as the fork's scheduler does.
          const C = Math.ceil(budget / B) * B;
          if (budget >= B * Math.ceil((P + B - 1) / B) && C < L) {
            const blocks = lens.reduce((a, n) => a + Math.ceil(n / B), 0);
            assert.equal(blocks, (C * N) / B, `${tag}: exactly the budget's blocks remain`);
            assert.ok(total / N <= budget + B, `${tag}: average ${total / N} within one block of ${budget}`);
            evicting++;
          }
          if (new Set(lens).size > 1) unequal++;
        }
      }
    }
  }
  assert.ok(evicting > 20, 'enough evicting cases');
  assert.ok(unequal > 20, `heads end with different lengths in many cases (${unequal})`);
});

test('ties: equal metrics evict the oldest slots of the lowest head first', () => {
  const shape: ModelShape = { numLayers: 1, numHeads: 2, numKvHeads: 2, headDim: 4 };
  const m = make({ protectedWindow: 2, continual: false });
  const L = 10;
  const scores = [[new Float32Array(L).fill(1), new Float32Array(L).fill(1)]];
  const pos = Int32Array.from({ length: L }, (_, j) => j);
  // Block 4: a = 2; budget 7 per head -> target ceil(14/4) = 4 blocks of 6 allocated: free 2.
  const kept = m.plan(scores, { shape, budget: 7, blockSlots: 4, lengths: [[L, L]], positions: [[pos, pos]], tokensSeen: L });
  assert.deepEqual(asLists(kept), [[[6, 7, 8, 9], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]]);
});

test('continual: decode metrics accumulate, evictions match the brute force, slots stay within budget', () => {
  const r = rng(3);
  const layers = 3;
  const G = 3;
  const shape: ModelShape = { numLayers: layers, numHeads: 6, numKvHeads: 2, headDim: 8 };
  const N = layers * 2;
  for (const [B, P, budget, L0] of [[16, 8, 40, 100], [8, 32, 48, 70], [16, 32, 64, 200], [16, 32, 48, 120], [4, 0, 10, 30]] as const) {
    const m = make({ protectedWindow: P, continual: true });
    assert.ok(m.observeDecode && m.evictAfterStep);
    // Prefill: random scores, plan, compaction.
    // Heads differ in how peaked their attention is (exponent per head), so their lengths diverge.
    const peak = (l: number, h: number) => 1 + 3 * (l * 2 + h);
    const scores = Array.from({ length: layers }, (_, l) => [0, 1].map((h) => Float32Array.from({ length: L0 }, () => r() ** peak(l, h))));
    const s: Seq = {
      metrics: scores.map((row) => row.map((a) => Array.from(a))),
      lengths: Array.from({ length: layers }, () => [L0, L0]),
      positions: Array.from({ length: layers }, () => [0, 1].map(() => Array.from({ length: L0 }, (_, j) => j))),
      tokensSeen: L0,
    };
    const apply = (kept: Int32Array[][]) => {
      for (let l = 0; l < layers; l++) {
        for (let h = 0; h < 2; h++) {
          const k = kept[l]![h]!;
          const keepSet = new Set(k);
          s.positions[l]![h]!.forEach((p, j) => {
            if (!keepSet.has(j)) assert.ok(p <= s.tokensSeen - P, `protected position ${p} evicted at ${s.tokensSeen}`);
          });
          if (k.length === s.lengths[l]![h]!) continue;
          s.metrics[l]![h] = Array.from(k, (j) => s.metrics[l]![h]![j]!);
          s.positions[l]![h] = Array.from(k, (j) => s.positions[l]![h]![j]!);
          s.lengths[l]![h] = k.length;
          m.onCompact(l, h, k);
        }
      }
    };
    apply(m.plan(scores, ctxOf(s, shape, budget, B)));
    let evictions = 0;
    let unequalSteps = 0;
    for (let step = 0; step < 250; step++) {
      for (let l = 0; l < layers; l++) {
        for (let h = 0; h < 2; h++) {
          s.positions[l]![h]!.push(s.tokensSeen);
          s.metrics[l]![h]!.push(0);
          const n = ++s.lengths[l]![h]!;
          const probs = new Float32Array(G * n);
          for (let g = 0; g < G; g++) {
            let z = 0;
            for (let j = 0; j < n; j++) { const e = r() ** (2 * peak(l, h)); probs[g * n + j] = e; z += e; }
            for (let j = 0; j < n; j++) probs[g * n + j] = probs[g * n + j]! / z;
          }
          for (let g = 0; g < G; g++) for (let j = 0; j < n; j++) s.metrics[l]![h]![j] += probs[g * n + j]! * probs[g * n + j]!;
          m.observeDecode!(l, h, probs, G);
        }
      }
      s.tokensSeen++;
      const slots = s.lengths.flat().reduce((a, b) => a + b, 0);
      const got: Int32Array[][] | null = m.evictAfterStep!(ctxOf(s, shape, budget, B));
      const C = Math.ceil(budget / B) * B;
      const want = slots >= C * N + B ? bruteKeep(s, P, budget, B) : null;
      const tag = `B=${B} P=${P} budget=${budget} step=${step}`;
      assert.deepEqual(got && asLists(got), want, tag);
      if (got) { apply(got); evictions++; }
      const after = s.lengths.flat().reduce((a, b) => a + b, 0);
      assert.ok(after < C * N + B, `${tag}: ${after} slots, budget ${C * N} + one block`);
      assert.ok(after <= (C + B) * N, `${tag}: within budget + one block per head`);
      if (new Set(s.lengths.flat()).size > 1) unequalSteps++;
    }
    assert.ok(evictions >= 5, `B=${B}: continual evictions happened (${evictions})`);
    // At budget = the protected floor (P + B - 1 rounded up to blocks) every head is pinned to it.
    const floor = B * Math.ceil((P + B - 1) / B);
    assert.ok(budget === floor || unequalSteps > 0, `B=${B} P=${P} budget=${budget}: heads differ in length after some steps`);
  }
});

test('registry entry: defaults, window size and continual hooks', () => {
  const names = Object.keys(kvcompressEntry.options).sort();
  assert.deepEqual(names, ['continual', 'metric_window', 'pooling', 'protected_window']);
  const defaults = Object.fromEntries(Object.entries(kvcompressEntry.options).map(([k, v]) => [k, v.default]));
  const shape: ModelShape = { numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 8 };
  const ctx = { budget: 64, promptLength: 100, maxNewTokens: 10, shape, maxPositionEmbeddings: 4096, blockSlots: 16 };
  // The fork's fixed-size recipe: window 8, max-pooled metric, protected window 8, compressed once.
  assert.deepEqual(defaults, { metric_window: 8, pooling: 'max', protected_window: 8, continual: false });
  const ev = kvcompressEntry.create(ctx, defaults).eviction!;
  assert.equal(ev.windowSize, 8);
  assert.equal(ev.expandGqa, false);
  assert.equal(ev.minLengthToEvict, 0);
  assert.equal(ev.observeDecode, undefined);
  assert.equal(ev.evictAfterStep, undefined);
  const on = kvcompressEntry.create(ctx, { ...defaults, continual: true, metric_window: 32 }).eviction!;
  assert.equal(on.windowSize, 32);
  assert.equal(typeof on.observeDecode, 'function');
  assert.equal(typeof on.evictAfterStep, 'function');
});

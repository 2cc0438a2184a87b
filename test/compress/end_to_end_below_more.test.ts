import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { Engine } from '../../src/engine/engine.ts';
import { CompressionSession } from '../../src/compress/session.ts';
import type { SequenceKV } from '../../src/kv/store.ts';
import { makeRng } from '../../src/engine/sampling.ts';
import { forwardRef, pool } from './forward-ref.ts';
import { onEverySelection } from './helpers.ts';

/**
 * More methods on the real forward pass at budgets well below the prompt (the companion of
 * end_to_end_below.test.ts): snapkv (gqa=expand), pyramidkv, adakv, kvcompress, sparq and hybrid,
 * each against brute force written here from ALGORITHMS.md (and the method's header where it is
 * more precise) over the queries and keys the model itself produced. The references are f64 and
 * independent of the methods' helpers; the engine works in f32, so a kept set is checked as a
 * top-k of the reference scores up to a tolerance at the threshold.
 *
 * The model: 4 layers (so pyramidkv's budgets fall over more than two points and kvcompress ranks
 * 8 heads), 6 query heads over 2 KV heads (G = 3), head dim 32 (so sparq's r > 1).
 */
let dir = '';
let engine: Engine;
const L = 410;
const BLOCK = 16;
const TOL = 1e-4;
/**
 * The decode selectors score in f64 from the same f32 queries, keys and page bounds as the
 * references here, so only the order of the f64 sums differs: a much tighter tolerance.
 */
const SELECT_TOL = 1e-9;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rkv-e2e-below-more-'));
  writeRandomCheckpoint(dir, {
    architecture: 'llama', hiddenSize: 192, intermediateSize: 128, numLayers: 4, numHeads: 6, numKvHeads: 2,
    vocab: 'bytes', maxPositionEmbeddings: 2048, tieWordEmbeddings: false, dtype: 'F32', seed: 91, weightScale: 2,
  });
  engine = await Engine.load(dir, { threads: 2, weights: 'f32' });
});

after(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

const tokens = (() => {
  const rng = makeRng(11);
  return Array.from({ length: L }, () => Math.floor(rng() * 256));
})();

const MAX_NEW = 8;
const { captureFull, prefillWith, windowProbs, keptPositions } = forwardRef(() => engine, tokens, BLOCK);

/** The largest finite |score| (the tolerance's scale; +inf marks always-kept slots). */
function finiteScale(scores: number[]): number {
  let m = 1e-12;
  for (const v of scores) if (Number.isFinite(v)) m = Math.max(m, Math.abs(v));
  return m;
}

/**
 * `kept` (positions) is every position windowFrom..n-1 plus a top-k of `scores` over positions
 * 0..windowFrom-1, up to TOL (relative to the largest finite score) at the threshold.
 */
function assertTopK(kept: number[], scores: number[], k: number, windowFrom: number, label: string, n = L, tol = TOL): void {
  for (let j = windowFrom; j < n; j++) assert.ok(kept.includes(j), `${label}: window position ${j} kept`);
  const chosen = kept.filter((j) => j < windowFrom);
  assert.equal(chosen.length, k, `${label}: ${k} tokens chosen besides the window`);
  const head = scores.slice(0, windowFrom);
  const sorted = head.slice().sort((a, b) => b - a);
  const threshold = sorted[k - 1]!;
  const scale = finiteScale(head);
  const set = new Set(chosen);
  for (let j = 0; j < windowFrom; j++) {
    if (set.has(j)) assert.ok(scores[j]! >= threshold - tol * scale, `${label}: kept ${j} scores ${scores[j]} below the threshold ${threshold}`);
    else assert.ok(scores[j]! <= threshold + tol * scale, `${label}: dropped ${j} scores ${scores[j]} above the threshold ${threshold}`);
  }
}


/** Rows of `keys` ([L, d]) at `positions`. */
function rowsAt(keys: Float32Array, positions: number[], d: number): number[] {
  const out: number[] = [];
  for (const p of positions) for (let i = 0; i < d; i++) out.push(keys[p * d + i]!);
  return out;
}

/**
 * SnapKV's score row of ONE query head (the original, per-query-head SnapKV): mean over the W
 * window queries of its attention over the first L-W keys, avg-pooled with kernel 7.
 */
function snapRow(q: Float32Array, keys: Float32Array, qh: number, W: number): number[] {
  const s = new Array<number>(L - W).fill(0);
  for (const row of windowProbs(q, keys, qh, W)) for (let j = 0; j < L - W; j++) s[j] += row[j]! / W;
  return pool(s, 7, 'avg');
}

/** The expanded layer: one stored head per query head, each a copy of its KV head's keys (checked at the kept positions). */
function assertExpanded(seq: SequenceKV, layer: number, keys: Float32Array[]): void {
  const { numHeads, numKvHeads, headDim: d } = engine.config;
  const G = numHeads / numKvHeads;
  assert.equal(seq.headsIn(layer).length, numHeads, `layer ${layer}: one stored head per query head`);
  assert.ok(seq.isExpanded(layer), `layer ${layer} expanded`);
  for (let qh = 0; qh < numHeads; qh++) {
    const kept = keptPositions(seq, layer, qh);
    // Compaction keeps slots in position order, so slot i holds kept[i].
    assert.deepEqual(Array.from(seq.readKeys(layer, qh)), rowsAt(keys[Math.floor(qh / G)]!, kept, d), `layer ${layer} query head ${qh}: its KV head's keys`);
  }
}

test('snapkv (gqa=expand, the default) on the real forward pass, budget 72 of 410: each query head keeps its own top 40 by its mean window attention (avg pool 7) + the 32-token window', () => {
  const { q, keys } = captureFull();
  const B = 72;
  const W = 32;
  const { seq } = prefillWith({ method: 'snapkv', budget: B });
  const { numLayers, numHeads, numKvHeads } = engine.config;
  const G = numHeads / numKvHeads;
  let differ = 0;
  for (let l = 0; l < numLayers; l++) {
    assertExpanded(seq, l, keys[l]!);
    for (let qh = 0; qh < numHeads; qh++) {
      const kept = keptPositions(seq, l, qh);
      assertTopK(kept, snapRow(q[l]!, keys[l]![Math.floor(qh / G)]!, qh, W), B - W, L - W, `layer ${l} query head ${qh}`);
      if (qh % G !== 0 && kept.join() !== keptPositions(seq, l, qh - (qh % G)).join()) differ++;
    }
  }
  assert.ok(differ > 0, 'query heads of one group keep different sets (the expansion matters)');
  seq.release();
});

/** Python's round(): half to even. */
function roundHalfEvenRef(x: number): number {
  const f = Math.floor(x);
  const frac = x - f;
  if (frac === 0.5) return f % 2 === 0 ? f : f + 1;
  return frac < 0.5 ? f : f + 1;
}

test('pyramidkv (gqa=expand by default) on the real forward pass, mean budget 100 of 410: per-layer budgets W + round(max - l*step) falling linearly over B - W (beta 20), SnapKV top-k per query head', () => {
  const { q, keys } = captureFull();
  const B = 100;
  const W = 32;
  const beta = 20;
  const { seq } = prefillWith({ method: 'pyramidkv', budget: B });
  const { numLayers, numHeads, numKvHeads } = engine.config;
  const G = numHeads / numKvHeads;
  // The pyramid over the scored part X = B - W (PyramidKV's own code; the window is kept on top):
  // min = X / beta, max = 2X - min, clamped to L - W; the layers' mean is X.
  const X = B - W;
  let min = X / beta;
  let max = 2 * X - min;
  if (max >= L - W) { max = L - W; min = 2 * X - max; }
  const step = (max - min) / (numLayers - 1);
  const budgets = Array.from({ length: numLayers }, (_, l) => W + roundHalfEvenRef(max - l * step));
  for (let l = 1; l < numLayers; l++) assert.ok(budgets[l]! < budgets[l - 1]!, 'budgets fall from the first layer to the last');
  assert.ok(Math.abs(budgets.reduce((a, b) => a + b, 0) / numLayers - B) <= 1, `the layers' mean budget is B (${budgets.join(', ')})`);
  for (let l = 0; l < numLayers; l++) {
    assertExpanded(seq, l, keys[l]!);
    for (let qh = 0; qh < numHeads; qh++) {
      const kept = keptPositions(seq, l, qh);
      assert.equal(kept.length, budgets[l], `layer ${l} query head ${qh}: keeps its layer's budget`);
      assertTopK(kept, snapRow(q[l]!, keys[l]![Math.floor(qh / G)]!, qh, W), budgets[l]! - W, L - W, `layer ${l} query head ${qh}`);
    }
  }
  seq.release();
});

/**
 * AdaKV's kept sets on the real forward pass against the brute force; returns how many heads had
 * a floor that binds (their floor-th best score is below the layer-wide threshold).
 */
function checkAdakv(B: number, alpha: number | undefined): number {
  const { q, keys } = captureFull();
  const W = 32;
  const { seq } = prefillWith({ method: 'adakv', budget: B, ...(alpha === undefined ? {} : { alpha }) });
  const a = alpha ?? 0.2; // the default
  const { numLayers, numHeads, numKvHeads } = engine.config;
  const G = numHeads / numKvHeads;
  // adakv.ts follows Ada-KV's code: the allocation is over X = B - W scored tokens per head, the
  // window is kept on top of it, and the floor is floor(alpha * X) scored tokens. ALGORITHMS.md
  // words it as "total H_kv x B, floor alpha x B"; with gqa=expand (the default) the stored heads
  // are the query heads, so a layer keeps H_q x B here.
  const X = B - W;
  const f = Math.floor(a * X);
  const H = numHeads;
  let floorBinds = 0;
  let unequal = 0;
  for (let l = 0; l < numLayers; l++) {
    assertExpanded(seq, l, keys[l]!);
    const scores = Array.from({ length: H }, (_, qh) => snapRow(q[l]!, keys[l]![Math.floor(qh / G)]!, qh, W));
    // Brute force: each head's top f (ties to the lower slot), then the best of the rest across the layer.
    const floorSet = scores.map((s) => new Set(s.map((v, j) => ({ v, j })).sort((x, y) => y.v - x.v || x.j - y.j).slice(0, f).map((e) => e.j)));
    const floorThr = scores.map((s) => (f > 0 ? s.slice().sort((x, y) => y - x)[f - 1]! : Infinity));
    const rest: { v: number; h: number; j: number }[] = [];
    for (let h = 0; h < H; h++) for (let j = 0; j < L - W; j++) if (!floorSet[h]!.has(j)) rest.push({ v: scores[h]![j]!, h, j });
    rest.sort((x, y) => y.v - x.v || x.h - y.h || x.j - y.j);
    const remaining = H * X - H * f;
    const T = remaining > 0 ? rest[remaining - 1]!.v : Infinity;
    const tol = TOL * Math.max(...scores.map(finiteScale));
    let total = 0;
    const counts: number[] = [];
    for (let h = 0; h < H; h++) {
      const label = `alpha ${a} layer ${l} query head ${h}`;
      const kept = keptPositions(seq, l, h);
      for (let j = L - W; j < L; j++) assert.ok(kept.includes(j), `${label}: window position ${j} kept`);
      const chosen = new Set(kept.filter((j) => j < L - W));
      assert.ok(chosen.size >= f, `${label}: at least the floor of ${f} scored tokens (${chosen.size})`);
      total += chosen.size;
      counts.push(chosen.size);
      const s = scores[h]!;
      for (const j of floorSet[h]!) {
        // A floor token may be missing only as a near-tie at the head's floor threshold that the layer-wide pass did not take either.
        if (!chosen.has(j)) assert.ok(s[j]! <= Math.min(floorThr[h]!, T) + tol, `${label}: floor token ${j} (${s[j]}) dropped`);
      }
      for (let j = 0; j < L - W; j++) {
        if (floorSet[h]!.has(j)) continue;
        if (chosen.has(j)) assert.ok(s[j]! >= T - tol || s[j]! >= floorThr[h]! - tol, `${label}: kept ${j} scores ${s[j]} below the layer threshold ${T}`);
        else assert.ok(s[j]! <= T + tol, `${label}: dropped ${j} scores ${s[j]} above the layer threshold ${T}`);
      }
      if (floorThr[h]! < T - tol) floorBinds++;
    }
    assert.equal(total, H * X, `alpha ${a} layer ${l}: H * (B - W) scored tokens in all`);
    if (new Set(counts).size > 1) unequal++;
  }
  assert.ok(unequal > 0, `alpha ${a}: heads of a layer end with unequal budgets`);
  seq.release();
  return floorBinds;
}

test('adakv (defaults: alpha 0.2, gqa=expand) on the real forward pass, mean budget 80 of 410: per layer one top-(H*(B-W)) across its heads, a floor of floor(0.2*(B-W)) scored tokens per head, + every head\'s window', () => {
  checkAdakv(80, undefined);
});

test('adakv with alpha 0.9 on the real forward pass, mean budget 80 of 410: the per-head floor binds (heads keep floor tokens the layer-wide top-k would drop)', () => {
  // On this random model the heads' attention is too even for the default floor to bind, so a
  // high alpha exercises the floor itself.
  assert.ok(checkAdakv(80, 0.9) > 0, 'some head keeps floor tokens that the layer-wide top-k alone would have dropped (the floor matters)');
});

test('kvcompress (defaults) on the real forward pass, average budget 100 of 410: squared window-8 attention max-pooled per query head, 7 protected, blocks freed across all layers and heads in gate order', () => {
  const { q, keys } = captureFull();
  const B = 100;
  const w = 8;
  const protectedCached = 8 - 1; // protected_window 8 counts the newest, not yet cached, token (the fork's rule)
  const { seq } = prefillWith({ method: 'kvcompress', budget: B });
  const { numLayers, numHeads, numKvHeads } = engine.config;
  const G = numHeads / numKvHeads;
  const N = numLayers * numKvHeads;
  // Metric per KV head (not expanded): per query head sum_i A[i, j]^2 over the last w queries, max-pool 7, summed over the group.
  const metric: number[][] = [];
  for (let l = 0; l < numLayers; l++) {
    assert.equal(seq.headsIn(l).length, numKvHeads, 'kvcompress compresses the un-expanded cache');
    for (let h = 0; h < numKvHeads; h++) {
      const m = new Array<number>(L).fill(0);
      for (let g = 0; g < G; g++) {
        const sq = new Array<number>(L).fill(0);
        for (const row of windowProbs(q[l]!, keys[l]![h]!, h * G + g, w)) for (let j = 0; j < L; j++) sq[j] += row[j]! * row[j]!;
        const pooled = pool(sq, 7, 'max');
        for (let j = 0; j < L; j++) m[j] += pooled[j]!;
      }
      for (let j = L - protectedCached; j < L; j++) m[j] = Infinity;
      metric.push(m);
    }
  }
  // Budget: an average per head, rounded up to whole blocks per head (the fork's scheduler), so
  // E = allocated - N * ceil(B / block). (ALGORITHMS.md's first formula, ceil(B * N / block), is
  // the unrounded form; its "details of the fork" paragraph gives this rounding.)
  const blocksPerHead = Math.ceil(L / BLOCK);
  const keptBlocks = N * Math.ceil(B / BLOCK);
  const E = N * blocksPerHead - keptBlocks;
  const a = L % BLOCK || BLOCK;
  // The brute force: walk every finite slot in ascending (metric, head, slot) order; a head frees a
  // block each time a, then a + 16, a + 32, ... of its slots have been passed; never its last block
  // (kvcompress.ts's own rule; it cannot bind with the default protected window, whose +inf slots
  // sit in every head's last block). L = 410 makes a = 10, not a whole block.
  const walk: { m: number; g: number; j: number }[] = [];
  for (let g = 0; g < N; g++) for (let j = 0; j < L; j++) if (Number.isFinite(metric[g]![j]!)) walk.push({ m: metric[g]![j]!, g, j });
  walk.sort((x, y) => x.m - y.m || x.g - y.g || x.j - y.j);
  const passed = new Array<number>(N).fill(0);
  const freedRef = new Array<number>(N).fill(0);
  let freedTotal = 0;
  let lastGate = NaN;
  for (const { m, g } of walk) {
    if (freedTotal === E) break;
    passed[g]++;
    if (freedRef[g]! < blocksPerHead - 1 && passed[g] === a + freedRef[g]! * BLOCK) {
      freedRef[g]++;
      freedTotal++;
      lastGate = m;
    }
  }
  assert.equal(freedTotal, E, 'enough finite candidates to free E blocks');
  // Per head, the gate of its e-th block (for the tolerance at the cut): the (a + (e-1)*16)-th lowest metric.
  const gateOf = metric.map((m) => {
    const asc = m.slice().sort((x, y) => x - y);
    return (e: number): number => asc[a + (e - 1) * BLOCK - 1]!;
  });
  const scale = Math.max(...metric.map(finiteScale));
  const lengths: number[] = [];
  let blocks = 0;
  for (let l = 0; l < numLayers; l++) {
    for (let h = 0; h < numKvHeads; h++) {
      const g = l * numKvHeads + h;
      const label = `layer ${l} head ${h}`;
      const kept = keptPositions(seq, l, h);
      const n = kept.length;
      lengths.push(n);
      blocks += Math.ceil(n / BLOCK);
      // Freeing e blocks evicts (e - 1) * 16 + a slots.
      const freed = n === L ? 0 : (L - n - a) / BLOCK + 1;
      assert.ok(Number.isInteger(freed) && freed >= 0, `${label}: whole blocks freed (${n} kept)`);
      // A different block count than the walk's only at a near-tie of gates with the last one taken.
      for (let e = freedRef[g]! + 1; e <= freed; e++) assert.ok(gateOf[g]!(e) <= lastGate + TOL * scale, `${label}: frees block ${e} (gate ${gateOf[g]!(e)}) past the last gate ${lastGate}`);
      for (let e = freed + 1; e <= freedRef[g]!; e++) assert.ok(gateOf[g]!(e) >= lastGate - TOL * scale, `${label}: keeps block ${e} (gate ${gateOf[g]!(e)}) below the last gate ${lastGate}`);
      // Within the head: the n kept slots are its n largest metrics (the protected ones +inf).
      assertTopK(kept, metric[g]!, n, L, label);
      // Compaction keeps K with its position.
      assert.deepEqual(Array.from(seq.readKeys(l, h)), rowsAt(keys[l]![h]!, kept, engine.config.headDim), `${label}: keys follow their positions`);
    }
  }
  assert.equal(blocks, keptBlocks, `N * ceil(B / ${BLOCK}) blocks kept in all`);
  assert.ok(new Set(lengths).size > 1, `heads end with different lengths (${lengths.join(', ')})`);
  seq.release();
});

/** Run `steps` decode steps through the session (tokens after the prompt's last one). */
function decode(seq: SequenceKV, session: CompressionSession, steps: number): void {
  let last = tokens[L - 1]!;
  for (let step = 0; step < steps; step++) {
    engine.model.forward([{ seq, tokens: [last], hooks: session, decode: true }]);
    session.afterDecodeStep();
    last = (last + 1) % 256;
  }
}

/** Indices of the r largest values, ties to the lower index. */
function topIndices(v: ArrayLike<number>, r: number): number[] {
  return Array.from({ length: v.length }, (_, i) => i).sort((x, y) => v[y]! - v[x]! || x - y).slice(0, r);
}

test('sparq on the real decode pass, budget 120 of 410: every step reads the top 60 tokens of the group-summed SparQ approximation (top-r |q| channels, temperature sqrt(d * sum|q_r| / sum|q|))', () => {
  const B = 120;
  const { seq, session } = prefillWith({ method: 'sparq', budget: B });
  const d = engine.config.headDim;
  const k = Math.floor(B / 2);
  let checked = 0;
  const rs = new Set<number>();
  onEverySelection(session, (layer, h, q, group, picked) => {
    assert.ok(picked && !Array.isArray(picked), 'sparq reads one subset per KV group');
    const keys = seq.readKeys(layer, h);
    const n = keys.length / d;
    // r so that the approximate pass (n x r floats) reads about as much as k full keys.
    const r = Math.min(d, Math.max(1, Math.floor((d * k) / n)));
    rs.add(r);
    const absSum = new Float64Array(d);
    for (let g = 0; g < group; g++) for (let i = 0; i < d; i++) absSum[i] += Math.abs(q[g * d + i]!);
    const ch = topIndices(absSum, r);
    const total = new Array<number>(n).fill(0);
    for (let g = 0; g < group; g++) {
      let all = 0;
      let part = 0;
      for (let i = 0; i < d; i++) all += Math.abs(q[g * d + i]!);
      for (const c of ch) part += Math.abs(q[g * d + c]!);
      const temp = Math.sqrt((d * part) / all);
      const logits = Array.from({ length: n }, (_, t) => {
        let dot = 0;
        for (const c of ch) dot += q[g * d + c]! * keys[t * d + c]!;
        return dot / temp;
      });
      const mx = Math.max(...logits);
      const e = logits.map((x) => Math.exp(x - mx));
      const sum = e.reduce((x, y) => x + y, 0);
      for (let t = 0; t < n; t++) total[t] += e[t]! / sum;
    }
    // The cache is whole here (slot = position).
    assertTopK(Array.from(picked as Int32Array), total, k, n, `layer ${layer} head ${h} (n ${n})`, n, SELECT_TOL);
    checked++;
  });
  decode(seq, session, 4);
  assert.equal(checked, 4 * engine.config.numLayers * engine.config.numKvHeads);
  assert.ok([...rs].every((r) => r > 1 && r < d), `r strictly between 1 and d (${[...rs].join(', ')})`);
  seq.release();
});

/**
 * Checks every hybrid selection of 4 decode steps against the brute force; `page` overrides the
 * split's page size (0 = the split's). Returns how many calls ended on a partial page.
 */
function checkHybrid(B: number, page: number): number {
  const { seq, session } = prefillWith({ method: 'hybrid', budget: B, ...(page > 0 ? { page } : {}) });
  const d = engine.config.headDim;
  // The RocketKV budget split (ALGORITHMS.md) for this request: its page, r and topk are hybrid's defaults.
  const S = Math.min(L + MAX_NEW, 2048);
  const c = Math.max(1, S / B);
  const alpha = Math.min(0.2 + 0.06 * Math.log2(c), 0.8);
  const cap = Math.max(Math.floor(S / Math.pow(c, alpha)), Math.min(2 * MAX_NEW, S));
  const k = Math.floor(B / 2);
  const c2 = Math.max(1, cap / B);
  let splitPage = Math.ceil(Math.sqrt(c2));
  if (splitPage > c2) splitPage = 1;
  const r = Math.floor((d * splitPage) / c2);
  const P = page > 0 ? page : splitPage;
  assert.ok(P > 1 && r > 1 && r < d, `a real page and channel cut (page ${P}, r ${r}, topk ${k})`);
  let checked = 0;
  let partialPage = 0;
  onEverySelection(session, (layer, h, q, group, picked) => {
    assert.ok(picked && !Array.isArray(picked), 'hybrid reads one subset per KV group');
    const label = `layer ${layer} head ${h}`;
    const keys = seq.readKeys(layer, h);
    const n = keys.length / d;
    const pages = Math.ceil(n / P);
    if (n % P !== 0) partialPage++;
    // Page summaries from the keys themselves.
    const mn: number[][] = [];
    const mx: number[][] = [];
    for (let p = 0; p < pages; p++) {
      mn.push(new Array<number>(d).fill(Infinity));
      mx.push(new Array<number>(d).fill(-Infinity));
      for (let t = p * P; t < Math.min(n, (p + 1) * P); t++) {
        for (let i = 0; i < d; i++) { mn[p]![i] = Math.min(mn[p]![i]!, keys[t * d + i]!); mx[p]![i] = Math.max(mx[p]![i]!, keys[t * d + i]!); }
      }
    }
    const absSum = new Array<number>(d).fill(0);
    for (let g = 0; g < group; g++) for (let i = 0; i < d; i++) absSum[i] += Math.abs(q[g * d + i]!);
    const ch = topIndices(absSum, r);
    const useMax = ch.map((cc) => { let s = 0; for (let g = 0; g < group; g++) s += q[g * d + cc]!; return s > 0; });
    const total = new Array<number>(n).fill(0);
    for (let g = 0; g < group; g++) {
      let all = 0;
      let part = 0;
      for (let i = 0; i < d; i++) all += Math.abs(q[g * d + i]!);
      for (const cc of ch) part += Math.abs(q[g * d + cc]!);
      const temp = Math.sqrt((d * part) / all);
      // Every token takes its page's score; the softmax runs over the n tokens.
      const tokenLogit = Array.from({ length: n }, (_, t) => {
        const p = Math.floor(t / P);
        let dot = 0;
        ch.forEach((cc, x) => { dot += q[g * d + cc]! * (useMax[x] ? mx[p]![cc]! : mn[p]![cc]!); });
        return dot / temp;
      });
      const top = Math.max(...tokenLogit);
      const e = tokenLogit.map((x) => Math.exp(x - top));
      const sum = e.reduce((x, y) => x + y, 0);
      for (let t = 0; t < n; t++) total[t] += e[t]! / sum;
    }
    const list = Array.from(picked as Int32Array);
    assertTopK(list, total, k, n, `${label} (n ${n})`, n, SELECT_TOL);
    // hybrid.ts's rule where rocket.py is silent: tokens of a page tie, ties go to the lower slot,
    // so each page is read from its first slot (a prefix of the page).
    for (let p = 0; p < pages; p++) {
      const inPage = list.filter((s) => Math.floor(s / P) === p);
      assert.deepEqual(inPage, inPage.map((_, i) => p * P + i), `${label}: page ${p} read from its first slot`);
    }
    checked++;
  });
  decode(seq, session, 4);
  assert.equal(checked, 4 * engine.config.numLayers * engine.config.numKvHeads);
  seq.release();
  return partialPage;
}

test('hybrid (RocketKV stage 2, defaults from the budget split) on the real decode pass, budget 32 of 410: every step reads exactly the top-k tokens of the group-summed softmax over tokens of the page min/max approximation', () => {
  assert.ok(checkHybrid(32, 0) > 0, 'some steps end on a partial page');
});

test('hybrid with page 64 on the real decode pass, budget 128 of 410 (top 64 read): the partial last page (27-30 of 64 tokens) weighs by its token count in the softmax over tokens', () => {
  // A large page makes the partial last page's share of each query head's softmax large enough
  // that a softmax over pages (each page counted once) would rank some pages differently here.
  assert.equal(checkHybrid(128, 64), 4 * engine.config.numLayers * engine.config.numKvHeads, 'every step ends on a partial page');
});

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { Engine } from '../../src/engine/engine.ts';
import { makeRng } from '../../src/engine/sampling.ts';
import { forwardRef, pool } from './forward-ref.ts';
import { onEverySelection } from './helpers.ts';

/**
 * Methods on the real forward pass at budgets well below the prompt, against brute force written
 * from ALGORITHMS.md over the queries and keys the model itself produced (captured through the
 * forward hooks and read back from the store). Scores are recomputed here in f64 while the engine
 * works in f32, so a kept set is checked as a top-k of the reference scores up to a tolerance at
 * the threshold (exact ties, as max-pooling makes, are broken by position in both).
 */
let dir = '';
let engine: Engine;
const L = 400;
const BLOCK = 16;
const TOL = 1e-4;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rkv-e2e-below-'));
  writeRandomCheckpoint(dir, {
    architecture: 'llama', hiddenSize: 96, intermediateSize: 128, numLayers: 2, numHeads: 6, numKvHeads: 2,
    vocab: 'bytes', maxPositionEmbeddings: 2048, tieWordEmbeddings: false, dtype: 'F32', seed: 77, weightScale: 2,
  });
  engine = await Engine.load(dir, { threads: 2, weights: 'f32' });
});

after(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

const tokens = (() => {
  const rng = makeRng(5);
  return Array.from({ length: L }, () => Math.floor(rng() * 256));
})();

const { captureFull, prefillWith, windowProbs, keptPositions } = forwardRef(() => engine, tokens, BLOCK);


/** `kept` (positions) is the window plus a top-(k) of `scores` over positions 0..n-1, up to TOL at the threshold. */
function assertTopK(kept: number[], scores: number[], k: number, windowFrom: number, label: string, n = L): void {
  for (let j = windowFrom; j < n; j++) assert.ok(kept.includes(j), `${label}: window position ${j} kept`);
  const chosen = kept.filter((j) => j < windowFrom);
  assert.equal(chosen.length, k, `${label}: ${k} tokens chosen besides the window`);
  const sorted = scores.slice().sort((a, b) => b - a);
  const threshold = sorted[k - 1]!;
  // Relative to the scores' magnitude (knorm's scores are negative norms).
  const scale = Math.max(1e-12, ...scores.map(Math.abs));
  const set = new Set(chosen);
  for (let j = 0; j < windowFrom; j++) {
    if (set.has(j)) assert.ok(scores[j]! >= threshold - TOL * scale, `${label}: kept ${j} scores ${scores[j]} below the threshold ${threshold}`);
    else assert.ok(scores[j]! <= threshold + TOL * scale, `${label}: dropped ${j} scores ${scores[j]} above the threshold ${threshold}`);
  }
}


test('snapkv++ (RocketKV stage 1) on the real forward pass, prompt budget 96 of 400: window attention summed over the group, maxpool 63', () => {
  const { q, keys } = captureFull();
  const P = 96;
  const W = 32;
  const { seq } = prefillWith({ method: 'snapkv++', budget: P });
  const G = engine.config.numHeads / engine.config.numKvHeads;
  for (let l = 0; l < engine.config.numLayers; l++) {
    for (let h = 0; h < engine.config.numKvHeads; h++) {
      const s = new Array<number>(L - W).fill(0);
      for (let g = 0; g < G; g++) for (const row of windowProbs(q[l]!, keys[l]![h]!, h * G + g, W)) for (let j = 0; j < L - W; j++) s[j] += row[j]!;
      assertTopK(keptPositions(seq, l, h), pool(s, 63, 'max'), P - W, L - W, `layer ${l} head ${h}`);
    }
  }
  seq.release();
});

test('snapkv (gqa=group) on the real forward pass, budget 80 of 400: mean window attention, avg pool 7', () => {
  const { q, keys } = captureFull();
  const B = 80;
  const W = 32;
  const { seq } = prefillWith({ method: 'snapkv', budget: B, gqa: 'group' });
  const G = engine.config.numHeads / engine.config.numKvHeads;
  for (let l = 0; l < engine.config.numLayers; l++) {
    for (let h = 0; h < engine.config.numKvHeads; h++) {
      const s = new Array<number>(L - W).fill(0);
      for (let g = 0; g < G; g++) for (const row of windowProbs(q[l]!, keys[l]![h]!, h * G + g, W)) for (let j = 0; j < L - W; j++) s[j] += row[j]! / (W * G);
      assertTopK(keptPositions(seq, l, h), pool(s, 7, 'avg'), B - W, L - W, `layer ${l} head ${h}`);
    }
  }
  seq.release();
});

test('streaming_llm on the real forward pass, budget 64 of 400: 4 sinks and the 60 most recent tokens', () => {
  const { seq } = prefillWith({ method: 'streaming_llm', budget: 64 });
  const want = [0, 1, 2, 3, ...Array.from({ length: 60 }, (_, i) => L - 60 + i)];
  for (let l = 0; l < engine.config.numLayers; l++) for (let h = 0; h < engine.config.numKvHeads; h++) assert.deepEqual(keptPositions(seq, l, h), want);
  seq.release();
});

test('quest on the real decode pass, budget 64 of 400: every step, each query head reads its top 4 pages by its own upper bound', () => {
  const B = 64;
  const page = 16;
  // dense_layers 0: this model has two layers, which the default (2) keeps dense (checked below).
  const { seq, session } = prefillWith({ method: 'quest', budget: B, dense_layers: 0 });
  const d = engine.config.headDim;
  let checked = 0;
  onEverySelection(session, (layer, h, q, group, picked) => {
    const keys = seq.readKeys(layer, h);
    const n = keys.length / d;
    const pages = Math.ceil(n / page);
    assert.ok(Array.isArray(picked) && picked.length === group, 'one page set per query head');
    for (let g = 0; g < group; g++) {
      const bound: number[] = [];
      for (let p = 0; p < pages; p++) {
        let u = 0;
        for (let i = 0; i < d; i++) {
          let mn = Infinity;
          let mx = -Infinity;
          for (let t = p * page; t < Math.min(n, (p + 1) * page); t++) { mn = Math.min(mn, keys[t * d + i]!); mx = Math.max(mx, keys[t * d + i]!); }
          const qi = q[g * d + i]!;
          u += Math.max(qi * mn, qi * mx);
        }
        bound.push(u);
      }
      const list = Array.from((picked as Int32Array[])[g]!);
      const pagesRead = [...new Set(list.map((s) => Math.floor(s / page)))];
      assert.equal(pagesRead.length, B / page);
      for (const p of pagesRead) assert.equal(list.filter((s) => Math.floor(s / page) === p).length, Math.min(page, n - p * page), 'whole pages');
      const sorted = bound.slice().sort((a, b) => b - a);
      const threshold = sorted[B / page - 1]!;
      for (let p = 0; p < pages; p++) {
        const scale = Math.max(1, Math.abs(sorted[0]!));
        if (pagesRead.includes(p)) assert.ok(bound[p]! >= threshold - TOL * scale, `page ${p} read below the threshold`);
        else assert.ok(bound[p]! <= threshold + TOL * scale, `page ${p} skipped above the threshold`);
      }
    }
    checked++;
  });
  let last = tokens[L - 1]!;
  for (let step = 0; step < 4; step++) {
    engine.model.forward([{ seq, tokens: [last], hooks: session, decode: true }]);
    session.afterDecodeStep();
    last = (last + 1) % 256;
  }
  assert.equal(checked, 4 * engine.config.numLayers * engine.config.numKvHeads);
  seq.release();
  // With the defaults the first two layers (all of this model's) attend to every slot.
  const dense = prefillWith({ method: 'quest', budget: B });
  for (let l = 0; l < 2; l++) for (let h = 0; h < engine.config.numKvHeads; h++) assert.equal(dense.session.select(l, h, new Float32Array(3 * d), 3), null);
  dense.seq.release();
});

test('knorm on the real forward pass, budget 50 of 400: the 50 keys of smallest norm per KV head', () => {
  const { keys } = captureFull();
  const d = engine.config.headDim;
  const { seq } = prefillWith({ method: 'knorm', budget: 50 });
  for (let l = 0; l < engine.config.numLayers; l++) {
    for (let h = 0; h < engine.config.numKvHeads; h++) {
      const k = keys[l]![h]!;
      const s = Array.from({ length: L }, (_, j) => {
        let sq = 0;
        for (let i = 0; i < d; i++) sq += k[j * d + i]! ** 2;
        return -Math.sqrt(sq);
      });
      assertTopK(keptPositions(seq, l, h), s, 50, L, `layer ${l} head ${h}`);
    }
  }
  seq.release();
});

test('tova on the real forward pass, budget 50 of 400: the last token\'s attention averaged over every query head, one set per layer', () => {
  const { q, keys } = captureFull();
  const { seq } = prefillWith({ method: 'tova', budget: 50 });
  const G = engine.config.numHeads / engine.config.numKvHeads;
  for (let l = 0; l < engine.config.numLayers; l++) {
    const s = new Array<number>(L - 1).fill(0);
    for (let qh = 0; qh < engine.config.numHeads; qh++) {
      const [row] = windowProbs(q[l]!, keys[l]![Math.floor(qh / G)]!, qh, 1);
      for (let j = 0; j < L - 1; j++) s[j] += row![j]! / engine.config.numHeads;
    }
    for (let h = 0; h < engine.config.numKvHeads; h++) {
      assertTopK(keptPositions(seq, l, h), s, 49, L - 1, `layer ${l} head ${h}`);
      assert.deepEqual(keptPositions(seq, l, h), keptPositions(seq, l, 0), 'every head of the layer keeps the same positions');
    }
  }
  seq.release();
});

test('per-query-head selections run through the attention kernels: the same list for every query head equals the shared list, all slots equal full', () => {
  const run = (select: (layer: number, h: number, n: number) => Int32Array | Int32Array[] | null): Float32Array => {
    const seq = engine.newSequence();
    engine.model.forward([{ seq, tokens }]);
    const hooks = { select: (layer: number, h: number) => select(layer, h, seq.headsIn(layer)[h]!.length) };
    const logits = engine.model.forward([{ seq, tokens: [7], hooks, decode: true }])[0]!.slice();
    seq.release();
    return logits;
  };
  const G = engine.config.numHeads / engine.config.numKvHeads;
  const shared = (n: number): Int32Array => Int32Array.from({ length: n }, (_, i) => i).filter((i) => i % 3 === 0 || i === n - 1);
  const a = run((_l, _h, n) => shared(n));
  const b = run((_l, _h, n) => Array.from({ length: G }, () => shared(n)));
  assert.deepEqual(Array.from(b), Array.from(a), 'identical per-head lists = the shared list');
  const full = run(() => null);
  const all = run((_l, _h, n) => Array.from({ length: G }, () => Int32Array.from({ length: n }, (_, i) => i)));
  assert.deepEqual(Array.from(all), Array.from(full), 'every slot for every query head = full attention');
  const differ = run((_l, _h, n) => Array.from({ length: G }, (_, g) => Int32Array.from({ length: n }, (_, i) => i).filter((i) => i % G === g || i === n - 1)));
  assert.notDeepEqual(Array.from(differ), Array.from(a), 'different lists per query head change the output');
});

test('exact_topk on the real decode pass, budget 40 of 400: each query head reads its own top 40 by exact attention', () => {
  const B = 40;
  const { seq, session } = prefillWith({ method: 'exact_topk', budget: B });
  const d = engine.config.headDim;
  let checked = 0;
  onEverySelection(session, (layer, h, q, group, picked) => {
    assert.ok(Array.isArray(picked) && picked.length === group, 'one list per query head');
    const keys = seq.readKeys(layer, h);
    const n = keys.length / d;
    (picked as Int32Array[]).forEach((list, g) => {
      const logits = Array.from({ length: n }, (_, t) => {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[g * d + i]! * keys[t * d + i]!;
        return dot / Math.sqrt(d);
      });
      // The cache is whole here (slot = position), and softmax keeps the order of the logits.
      assertTopK(Array.from(list), logits, B, n, `layer ${layer} head ${h} query ${g}`, n);
    });
    checked++;
  });
  let last = tokens[L - 1]!;
  for (let step = 0; step < 3; step++) {
    engine.model.forward([{ seq, tokens: [last], hooks: session, decode: true }]);
    session.afterDecodeStep();
    last = (last + 1) % 256;
  }
  assert.equal(checked, 3 * engine.config.numLayers * engine.config.numKvHeads);
  seq.release();
});

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { Engine } from '../../src/engine/engine.ts';
import { CompressionSession } from '../../src/compress/session.ts';
import { createCompression, resolveCompression, type CompressionRequest } from '../../src/compress/registry.ts';
import { ropeInvFreq } from '../../src/model/config.ts';
import { makeRng } from '../../src/engine/sampling.ts';

/**
 * expected_attention on the real forward pass, at a budget well below the prompt, against a brute
 * force written from kvpress's ExpectedAttentionPress: pre-RoPE queries captured from the model,
 * the RoPE rotation built as a dense d x d matrix per future position and averaged, covariance
 * from centred rows, all in f64. The engine keeps sums and rotates pair by pair, so kept sets
 * are compared as a top-k up to a tolerance at the threshold.
 */
let dir = '';
let engine: Engine;
const L = 360;
const TOL = 1e-4;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rkv-ea-'));
  writeRandomCheckpoint(dir, {
    architecture: 'llama', hiddenSize: 96, intermediateSize: 128, numLayers: 2, numHeads: 6, numKvHeads: 2,
    vocab: 'bytes', maxPositionEmbeddings: 2048, tieWordEmbeddings: false, dtype: 'F32', seed: 78, weightScale: 2,
  });
  engine = await Engine.load(dir, { threads: 2, weights: 'f32' });
});

after(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

const tokens = (() => {
  const rng = makeRng(9);
  return Array.from({ length: L }, () => Math.floor(rng() * 256));
})();

function shape() {
  const c = engine.config;
  return { numLayers: c.numLayers, numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim };
}

/** Dense RoPE rotation of position p (rotate-half pairs i, i + d/2), from theta directly. */
function ropeMatrix(p: number, d: number, theta: number): Float64Array {
  const R = new Float64Array(d * d);
  const half = d / 2;
  for (let i = 0; i < half; i++) {
    const a = Math.fround(p * Math.fround(Math.pow(theta, -(2 * i) / d)));
    R[i * d + i] = Math.cos(a);
    R[i * d + i + half] = -Math.sin(a);
    R[(i + half) * d + i + half] = Math.cos(a);
    R[(i + half) * d + i] = Math.sin(a);
  }
  return R;
}

function matmul(A: Float64Array, B: Float64Array, d: number, transposeB = false): Float64Array {
  const C = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) {
    let s = 0;
    for (let t = 0; t < d; t++) s += A[i * d + t]! * (transposeB ? B[j * d + t]! : B[t * d + j]!);
    C[i * d + j] = s;
  }
  return C;
}

/** Reference scores per [layer][kvHead], over positions 0..L-1. */
function reference(preQ: Float32Array[], keys: Float32Array[][], values: Float32Array[][], o: { nFuture: number; nSink: number; cov: boolean; vnorm: boolean }): number[][][] {
  const c = engine.config;
  const d = c.headDim;
  const G = c.numHeads / c.numKvHeads;
  const Rbar = new Float64Array(d * d);
  for (let p = L; p < L + o.nFuture; p++) {
    const R = ropeMatrix(p, d, c.ropeTheta);
    for (let i = 0; i < d * d; i++) Rbar[i]! += R[i]! / o.nFuture;
  }
  const out: number[][][] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const layer: number[][] = [];
    let layerMax = -Infinity;
    for (let h = 0; h < c.numKvHeads; h++) {
      const avg = new Array<number>(L).fill(0);
      for (let g = 0; g < G; g++) {
        const qh = h * G + g;
        const rows: Float64Array[] = [];
        for (let r = o.nSink; r < L; r++) rows.push(Float64Array.from(preQ[l]!.subarray(r * c.numHeads * d + qh * d, r * c.numHeads * d + qh * d + d)));
        const n = rows.length;
        const mu = new Float64Array(d);
        for (const x of rows) for (let i = 0; i < d; i++) mu[i]! += x[i]! / n;
        const C = new Float64Array(d * d);
        for (const x of rows) for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) C[i * d + j]! += (x[i]! - mu[i]!) * (x[j]! - mu[j]!) / n;
        const m2 = new Float64Array(d);
        for (let i = 0; i < d; i++) for (let t = 0; t < d; t++) m2[i]! += Rbar[i * d + t]! * mu[t]!;
        const C2 = matmul(matmul(Rbar, C, d), Rbar, d, true);
        const z = new Array<number>(L).fill(-Infinity);
        for (let j = o.nSink; j < L; j++) {
          const k = keys[l]![h]!.subarray(j * d, j * d + d);
          let v = 0;
          for (let i = 0; i < d; i++) v += m2[i]! * k[i]!;
          v /= Math.sqrt(d);
          if (o.cov) {
            let q2 = 0;
            for (let i = 0; i < d; i++) for (let t = 0; t < d; t++) q2 += k[i]! * C2[i * d + t]! * k[t]!;
            v += q2 / d / 2;
          }
          z[j] = v;
        }
        const mx = Math.max(...z.slice(o.nSink));
        let sum = 0;
        for (let j = o.nSink; j < L; j++) sum += Math.exp(z[j]! - mx);
        for (let j = o.nSink; j < L; j++) avg[j]! += Math.exp(z[j]! - mx) / sum / G;
      }
      const s = avg.map((p, j) => {
        if (!o.vnorm) return p;
        const v = values[l]![h]!.subarray(j * d, j * d + d);
        return p * Math.sqrt(v.reduce((a, x) => a + x * x, 0));
      });
      for (let j = o.nSink; j < L; j++) layerMax = Math.max(layerMax, s[j]!);
      layer.push(s);
    }
    for (const s of layer) for (let j = 0; j < o.nSink; j++) s[j] = layerMax + 1;
    out.push(layer);
  }
  return out;
}

function assertTopK(kept: number[], scores: number[], k: number, label: string): void {
  assert.equal(kept.length, k, `${label}: ${k} kept`);
  const sorted = scores.slice().sort((a, b) => b - a);
  const threshold = sorted[k - 1]!;
  const scale = Math.max(1e-12, sorted[4]!);
  const set = new Set(kept);
  for (let j = 0; j < L; j++) {
    if (set.has(j)) assert.ok(scores[j]! >= threshold - TOL * scale, `${label}: kept ${j} scores ${scores[j]} below the threshold ${threshold}`);
    else assert.ok(scores[j]! <= threshold + TOL * scale, `${label}: dropped ${j} scores ${scores[j]} above the threshold ${threshold}`);
  }
}

for (const variant of [
  { req: {}, o: { nFuture: 512, nSink: 4, cov: true, vnorm: true }, name: 'defaults (512 future positions, 4 sinks, covariance, value norm)' },
  { req: { use_covariance: false, use_vnorm: false, n_sink: 0, n_future_positions: 64 }, o: { nFuture: 64, nSink: 0, cov: false, vnorm: false }, name: 'mean only, no sinks, 64 future positions' },
]) {
  test(`expected_attention on the real forward pass, budget 48 of ${L}, ${variant.name}: the kept sets are the reference's top-48`, () => {
    const B = 48;
    const c = engine.config;
    const preQ: Float32Array[] = [];
    const cap = engine.newSequence();
    engine.model.forward([{ seq: cap, tokens, hooks: { onPreRopeQueries: (l: number, q: Float32Array) => { preQ[l] = q.slice(); } } }]);
    const keys = Array.from({ length: c.numLayers }, (_, l) => Array.from({ length: c.numKvHeads }, (_, h) => cap.readKeys(l, h)));
    const values = Array.from({ length: c.numLayers }, (_, l) => Array.from({ length: c.numKvHeads }, (_, h) => cap.readValues(l, h)));
    cap.release();
    const want = reference(preQ, keys, values, variant.o);

    const kv = resolveCompression({ method: 'expected_attention', budget: B, ...variant.req } as CompressionRequest);
    const seq = engine.newSequence();
    const parts = createCompression(kv, { promptLength: L, maxNewTokens: 8, shape: shape(), maxPositionEmbeddings: 2048, blockSlots: 16, ropeInvFreq: ropeInvFreq(c) });
    const session = new CompressionSession(seq, parts, shape(), B);
    // Two chunks: the statistics span calls, and the sink rows are left out of the first only.
    engine.model.forward([{ seq, tokens: tokens.slice(0, 200), hooks: session }]);
    engine.model.forward([{ seq, tokens: tokens.slice(200), hooks: session }]);
    session.afterPrefill(L);
    for (let l = 0; l < c.numLayers; l++) {
      for (let h = 0; h < c.numKvHeads; h++) {
        const head = seq.headsIn(l)[h]!;
        const kept = Array.from(head.positions.subarray(0, head.length));
        for (let j = 0; j < variant.o.nSink; j++) assert.ok(kept.includes(j), `sink ${j} kept`);
        assertTopK(kept, want[l]![h]!, B, `layer ${l} head ${h}`);
      }
    }
    seq.release();
  });
}

test('expected_attention: a later turn no longer than n_sink has no statistics to score with and keeps everything', async () => {
  const conv = engine.conversation({ method: 'expected_attention', budget: 48 });
  try {
    const a = conv.send({ tokens }, { maxTokens: 2, ignoreEos: true });
    for await (const _ of a) { /* drain */ }
    const b = conv.send({ tokens: tokens.slice(0, 3) }, { maxTokens: 2, ignoreEos: true });
    for await (const _ of b) { /* drain */ }
    // Turn 1 kept 48 and its 2 answer tokens join (the last one when the turn ends); turn 2 evicts
    // nothing and appends its 3 prompt and 2 answer tokens.
    assert.equal(a.stats!.kv.kvsPerHead.max, 48 + 2);
    assert.equal(b.stats!.kv.kvsPerHead.min, 48 + 2 + 3 + 2);
  } finally {
    conv.close();
  }
});

test('expected_attention needs query statistics from the prefill it starts from', async () => {
  const pre = await engine.prefill({ tokens });
  try {
    const g = engine.generate({ tokens }, { maxTokens: 2, kv: { method: 'expected_attention', budget: 48 }, from: pre });
    await assert.rejects((async () => { for await (const _ of g) { /* drain */ } })(), /kept no query statistics/);
  } finally {
    pre.release();
  }
  assert.equal(engine.pool.bytesInUse, 0);
});

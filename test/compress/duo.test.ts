import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { Engine } from '../../src/engine/engine.ts';
import { ropeInvFreq } from '../../src/model/config.ts';
import { cumulatedAttentionArea } from '../../src/compress/duo-scoring.ts';
import { DUO_FORMAT, type DuoPattern } from '../../src/compress/duo.ts';
import { makeRng } from '../../src/engine/sampling.ts';
import { assertOneLineError, runCli } from '../helpers/cli.ts';

/**
 * duo on the real forward pass: the heads of lowest pattern score stream (sinks + recent window),
 * the others keep everything, and the number that streams meets the average budget; the scoring
 * pass against a brute force of kvpress's on-the-fly formula; the CLI that writes the pattern.
 */
let dir = '';
let engine: Engine;
const L = 500;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rkv-duo-'));
  writeRandomCheckpoint(join(dir, 'm'), {
    architecture: 'llama', hiddenSize: 96, intermediateSize: 128, numLayers: 3, numHeads: 6, numKvHeads: 2,
    vocab: 'bytes', maxPositionEmbeddings: 2048, tieWordEmbeddings: false, dtype: 'F32', seed: 12, weightScale: 2,
  });
  engine = await Engine.load(join(dir, 'm'), { threads: 2, weights: 'f32' });
});

after(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

const prompt = (() => {
  const rng = makeRng(4);
  return Array.from({ length: L }, () => Math.floor(rng() * 256));
})();

function pattern(scores: number[][], fingerprint = engine.fingerprint): DuoPattern {
  return { format: DUO_FORMAT, model_fingerprint: fingerprint, q_len: 500, texts: 1, text_tokens: 1, source: 'test', scores };
}

test('cumulated attention area: brute force with dense RoPE matrices, and the uniform case', () => {
  const inv = ropeInvFreq(engine.config);
  const d = engine.config.headDim;
  const rng = makeRng(3);
  const mq = Float64Array.from({ length: d }, () => rng() * 2 - 1);
  const mk = Float64Array.from({ length: d }, () => rng() * 2 - 1);
  const qLen = 60;
  const rot = (x: Float64Array, p: number) => {
    const half = d / 2;
    const out = new Float64Array(d);
    for (let i = 0; i < half; i++) {
      const a = Math.fround(p * Math.fround(Math.pow(engine.config.ropeTheta, -(2 * i) / d)));
      out[i] = Math.cos(a) * x[i]! - Math.sin(a) * x[i + half]!;
      out[i + half] = Math.cos(a) * x[i + half]! + Math.sin(a) * x[i]!;
    }
    return out;
  };
  const q = rot(mq, qLen - 1);
  const w = Array.from({ length: qLen }, (_, j) => Math.exp(rot(mk, j).reduce((a, v, i) => a + v * q[i]!, 0) / Math.sqrt(d)));
  const z = w.reduce((a, b) => a + b, 0);
  let cum = 0;
  const want = w.reduce((area, x) => { cum += x / z; return area + cum; }, 0) / qLen;
  assert.ok(Math.abs(cumulatedAttentionArea(mq, mk, qLen, inv) - want) < 1e-9);
  // A zero key: uniform attention, area = mean of (j+1)/qLen.
  assert.ok(Math.abs(cumulatedAttentionArea(mq, new Float64Array(d), qLen, inv) - (qLen + 1) / (2 * qLen)) < 1e-12);
});

test('duo at budgets below the prompt: the lowest-scoring heads stream with sinks + recent, the rest keep all, the average meets the budget', async () => {
  const scores = [[0.9, 0.1], [0.5, 0.3], [0.2, 0.8]];
  const file = join(dir, 'pattern.json');
  writeFileSync(file, JSON.stringify(pattern(scores)));
  const flatOrder = [1, 4, 3, 2, 5, 0]; // flat heads by ascending score
  for (const [B, sink, recent] of [[300, 16, 32], [100, 16, 32], [24, 16, 32]] as const) {
    const g = engine.generate({ tokens: prompt }, { maxTokens: 3, ignoreEos: true, kv: { method: 'duo', budget: B, sink_size: sink, recent_size: recent, pattern: file } });
    for await (const _ of g) { /* drain */ }
    const S = sink + recent;
    const N = 6;
    const nStream = B >= S ? Math.round((N * (L - B)) / (L - S)) : N;
    const s = B >= S ? sink : Math.round((B * sink) / S);
    const r = B >= S ? recent : B - s;
    const stats = g.stats!;
    // After 3 steps every head has 2 appended tokens beyond its kept prompt slots.
    const kept = nStream * (s + r) + (N - nStream) * L;
    assert.equal(stats.kv.kvsPerHead.mean, kept / N + 2, `B=${B}`);
    assert.equal(stats.kv.kvsPerHead.min, (nStream > 0 ? s + r : L) + 2);
    if (B >= S) assert.ok(Math.abs(kept / N - B) <= (L - S) / N, `B=${B}: average ${kept / N} within one head's difference of the budget`);
    // Which heads: checked on a session directly.
    const { CompressionSession } = await import('../../src/compress/session.ts');
    const { createCompression, resolveCompression } = await import('../../src/compress/registry.ts');
    const c = engine.config;
    const shape = { numLayers: c.numLayers, numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim };
    const kv = resolveCompression({ method: 'duo', budget: B, sink_size: sink, recent_size: recent, pattern: file });
    const seq = engine.newSequence();
    const session = new CompressionSession(seq, createCompression(kv, { promptLength: L, maxNewTokens: 3, shape, maxPositionEmbeddings: 2048, blockSlots: 16 }), shape, B);
    engine.model.forward([{ seq, tokens: prompt, hooks: session }]);
    session.afterPrefill(L);
    const streaming = new Set(flatOrder.slice(0, nStream));
    for (let l = 0; l < c.numLayers; l++) {
      for (let h = 0; h < c.numKvHeads; h++) {
        const hd = seq.headsIn(l)[h]!;
        const pos = Array.from(hd.positions.subarray(0, hd.length));
        const want = streaming.has(l * 2 + h)
          ? Array.from({ length: L }, (_, j) => j).filter((j) => j < s || j >= L - r)
          : Array.from({ length: L }, (_, j) => j);
        assert.deepEqual(pos, want, `B=${B} layer ${l} head ${h}`);
      }
    }
    seq.release();
  }
});

test('rocketkv duo-heads writes a pattern beside the model that duo then reads; a missing or foreign pattern is a one-line error', async () => {
  const model = join(dir, 'm');
  const r = runCli(['duo-heads', '--model', model, '--texts', '2', '--threads', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /wrote .*duo-heads\.json: 6 KV heads scored on 2 texts/);
  const p = JSON.parse(readFileSync(join(model, 'duo-heads.json'), 'utf8')) as DuoPattern;
  assert.equal(p.scores.length, 3);
  for (const v of p.scores.flat()) assert.ok(v > 0 && v <= 1, `area ${v} in (0, 1]`);
  // The engine finds it beside the model.
  const g = engine.generate({ tokens: prompt }, { maxTokens: 2, kv: { method: 'duo', budget: 200 } });
  for await (const _ of g) { /* drain */ }
  assert.ok(g.stats!.kv.storedBytes < g.stats!.kv.fullBytes);
  // Errors: no pattern, a pattern of another shape.
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify(pattern([[1, 2]])));
  assertOneLineError(runCli(['run', '--model', model, '--kv-method', 'duo', '--kv-budget', '64', '--kv-opt', `pattern=${bad}`, '-n', '1', 'hello']), /another shape than 3 layers x 2 KV heads/);
  assertOneLineError(runCli(['run', '--model', model, '--kv-method', 'duo', '--kv-budget', '64', '--kv-opt', `pattern=${join(dir, 'none.json')}`, '-n', '1', 'hello']), /rocketkv duo-heads --model/);
  const foreign = join(dir, 'foreign.json');
  writeFileSync(foreign, JSON.stringify(pattern([[1, 2], [3, 4], [5, 6]], '0123456789abcdef')));
  assertOneLineError(runCli(['run', '--model', model, '--kv-method', 'duo', '--kv-budget', '64', '--kv-opt', `pattern=${foreign}`, '-n', '1', 'hello']), /scored on another checkpoint \(fingerprint 0123456789abcdef/);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { Engine } from '../../src/engine/engine.ts';
import { CompressionSession } from '../../src/compress/session.ts';
import type { EvictionMethod, LayerView } from '../../src/compress/press.ts';

/** The session's observation window and probabilities, against a brute force over the same keys. */
test('session: window queries are the last prompt rows and windowProbs is their causal softmax', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rkv-session-'));
  writeRandomCheckpoint(dir, {
    architecture: 'llama', hiddenSize: 96, intermediateSize: 128, numLayers: 2, numHeads: 6, numKvHeads: 2,
    vocab: 'bytes', maxPositionEmbeddings: 512, tieWordEmbeddings: true, dtype: 'F32', seed: 7,
  });
  const engine = await Engine.load(dir, { threads: 2, weights: 'f32' });
  try {
    const c = engine.config;
    const W = 12;
    const L = 53;
    const seen: LayerView[] = [];
    let worst = 0;
    const probe: EvictionMethod = {
      name: 'probe', windowSize: W, expandGqa: false, minLengthToEvict: 0,
      score(view) {
        seen.push(view);
        const d = c.headDim;
        const qDim = c.numHeads * d;
        for (let h = 0; h < view.heads; h++) {
          const keys = view.keys(h);
          for (const w of [W, 5]) {
            const got = view.windowProbs(h, w);
            for (let g = 0; g < view.group; g++) {
              for (let i = 0; i < w; i++) {
                const row = view.windowRows - w + i;
                const pos = L - view.windowRows + row;
                const qo = row * qDim + (h * view.group + g) * d;
                const logits: number[] = [];
                for (let s = 0; s <= pos; s++) {
                  let dot = 0;
                  for (let j = 0; j < d; j++) dot += view.windowQueries[qo + j]! * keys[s * d + j]!;
                  logits.push(dot / Math.sqrt(d));
                }
                const m = Math.max(...logits);
                const sum = logits.reduce((a, x) => a + Math.exp(x - m), 0);
                for (let s = 0; s < L; s++) {
                  const want = s <= pos ? Math.exp(logits[s]! - m) / sum : 0;
                  worst = Math.max(worst, Math.abs(got[(g * w + i) * L + s]! - want));
                }
              }
            }
          }
        }
        return Array.from({ length: view.heads }, () => new Float32Array(view.length(0)));
      },
      plan(scores) {
        return scores.map((layer) => layer.map((s) => Int32Array.from({ length: s.length }, (_, i) => i)));
      },
    };
    const seq = engine.newSequence();
    const session = new CompressionSession(seq, { eviction: probe }, { numLayers: c.numLayers, numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim }, 100);
    const tokens = Array.from({ length: L }, (_, i) => (i * 13 + 5) % 256);
    // Chunks smaller than the window: the session must stitch the last W rows across chunks.
    for (const [a, b] of [[0, 40], [40, 47], [47, 53]]) engine.model.forward([{ seq, tokens: tokens.slice(a, b), hooks: session }]);
    session.afterPrefill(L);
    assert.equal(seen.length, c.numLayers);
    assert.equal(seen[0]!.windowRows, W);
    assert.ok(worst < 1e-5, `largest probability error ${worst}`);
    // The window rows are the queries of the last W prompt tokens: recompute them in one chunk.
    const seq2 = engine.newSequence();
    let last: Float32Array | null = null;
    engine.model.forward([{ seq: seq2, tokens, hooks: { onQueries: (l, q) => { if (l === 1) last = q.slice((L - W) * c.numHeads * c.headDim); } } }]);
    assert.ok(last);
    const got = seen[1]!.windowQueries;
    let diff = 0;
    for (let i = 0; i < got.length; i++) diff = Math.max(diff, Math.abs(got[i]! - last![i]!));
    assert.ok(diff < 1e-4, `window queries differ by ${diff}`);
    seq.release();
    seq2.release();
  } finally {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { openSafetensors } from '../../src/model/safetensors.ts';
import { Engine } from '../../src/engine/engine.ts';
import { referenceLogits } from '../helpers/reference.ts';
import { makeRng } from '../../src/engine/sampling.ts';

type Arch = 'llama' | 'qwen2' | 'mistral';
const SPECS: { name: string; arch: Arch; tied: boolean; llama3?: boolean; dtype: 'F32' | 'F16' | 'BF16' }[] = [
  { name: 'llama + llama3 rope scaling, GQA, untied', arch: 'llama', tied: false, llama3: true, dtype: 'F32' },
  { name: 'qwen2 with q/k/v bias, tied', arch: 'qwen2', tied: true, dtype: 'BF16' },
  { name: 'mistral, GQA', arch: 'mistral', tied: false, dtype: 'F16' },
];

function maxRelErr(a: Float32Array, b: Float32Array): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return err / scale;
}

for (const spec of SPECS) {
  test(`forward matches the dense reference: ${spec.name}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rkv-fwd-'));
    try {
      await writeRandomCheckpoint(dir, {
        architecture: spec.arch,
        hiddenSize: 64,
        intermediateSize: 160,
        numLayers: 2,
        numHeads: 4,
        numKvHeads: 2,
        vocab: 'bytes',
        maxPositionEmbeddings: 256,
        tieWordEmbeddings: spec.tied,
        dtype: spec.dtype,
        seed: 5,
        ...(spec.llama3 ? { ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 } } : {}),
      } as Parameters<typeof writeRandomCheckpoint>[1]);
      const engine = await Engine.load(dir, { threads: 2, weights: 'f32' });
      try {
        const rng = makeRng(9);
        const tokens = Array.from({ length: 45 }, () => Math.floor(rng() * 256));
        const src = await openSafetensors(dir);
        const ref = referenceLogits(engine.config, src, tokens);
        src.close();

        // Chunked prefill (chunks straddle 16-slot blocks), then one token per step.
        const seq = engine.newSequence();
        let pos = 0;
        for (const n of [13, 7, 17]) {
          const logits = engine.model.forward([{ seq, tokens: tokens.slice(pos, pos + n) }])[0]!;
          pos += n;
          assert.ok(maxRelErr(logits, ref[pos - 1]!) < 1e-4, `prefill to ${pos}: rel err ${maxRelErr(logits, ref[pos - 1]!)}`);
        }
        while (pos < tokens.length) {
          const logits = engine.model.forward([{ seq, tokens: [tokens[pos]!] }])[0]!;
          pos++;
          assert.ok(maxRelErr(logits, ref[pos - 1]!) < 1e-4, `decode at ${pos}: rel err ${maxRelErr(logits, ref[pos - 1]!)}`);
        }
        assert.equal(seq.nextPosition, tokens.length);
        for (const h of seq.heads) assert.equal(h.length, tokens.length);
        seq.release();

        // Two sequences of different lengths in one call give what each gives alone.
        const a = engine.newSequence();
        const b = engine.newSequence();
        engine.model.forward([{ seq: a, tokens: tokens.slice(0, 20) }]);
        const [la, lb] = engine.model.forward([{ seq: a, tokens: [tokens[20]!] }, { seq: b, tokens: tokens.slice(0, 30) }]);
        assert.ok(maxRelErr(la!, ref[20]!) < 1e-4);
        assert.ok(maxRelErr(lb!, ref[29]!) < 1e-4);
        a.release();
        b.release();
        assert.equal(engine.pool.blocksInUse, 0);
      } finally {
        await engine.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('q8 weights stay close to f32 logits', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rkv-q8-'));
  try {
    await writeRandomCheckpoint(dir, {
      architecture: 'llama', hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2,
      vocab: 'bytes', maxPositionEmbeddings: 128, tieWordEmbeddings: true, dtype: 'F32', seed: 3,
    });
    const tokens = Array.from({ length: 24 }, (_, i) => (i * 37) % 256);
    const run = async (weights: 'f32' | 'q8') => {
      const e = await Engine.load(dir, { threads: 2, weights });
      try {
        const seq = e.newSequence();
        return e.model.forward([{ seq, tokens }])[0]!;
      } finally {
        await e.close();
      }
    };
    const f = await run('f32');
    const q = await run('q8');
    const err = maxRelErr(q, f);
    assert.ok(err < 0.05, `q8 relative error ${err}`);
    assert.ok(err > 0, 'q8 path must actually quantize');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeRandomCheckpoint, type RandomCheckpointSpec } from '../../src/model/random.ts';
import { exportGguf } from '../../src/model/gguf.ts';
import { Engine } from '../../src/engine/engine.ts';

/**
 * Loading a GGUF file gives the same model as loading the Hugging Face checkpoint it was made
 * from: same config, tokenizer ids, chat template and logits. The llama export permutes Q/K rows
 * (the loader must undo it), llama3 rope scaling travels as the rope_freqs tensor, Qwen2 carries
 * biases and rotate-half RoPE. llama.cpp runs the same files in gguf.test.ts.
 */
const base: Omit<RandomCheckpointSpec, 'architecture' | 'seed'> = {
  hiddenSize: 64, intermediateSize: 96, numLayers: 2, numHeads: 4, numKvHeads: 2, vocab: 'bytes',
  maxPositionEmbeddings: 256, tieWordEmbeddings: false, dtype: 'F32',
};

const cases: { name: string; spec: RandomCheckpointSpec; dtype: 'f32' | 'f16'; tolerance: number }[] = [
  { name: 'llama (Q/K rows permuted in the file)', spec: { ...base, architecture: 'llama', seed: 31 }, dtype: 'f32', tolerance: 1e-4 },
  { name: 'llama, llama3 rope scaling as rope_freqs', spec: { ...base, architecture: 'llama', seed: 32, ropeTheta: 10000, ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 32 } }, dtype: 'f32', tolerance: 1e-4 },
  { name: 'qwen2, biases, tied embeddings', spec: { ...base, architecture: 'qwen2', seed: 33, tieWordEmbeddings: true }, dtype: 'f32', tolerance: 1e-4 },
  { name: 'mistral as llama, one KV head, f16 tensors', spec: { ...base, architecture: 'mistral', seed: 34, numKvHeads: 1 }, dtype: 'f16', tolerance: 5e-2 },
];

const TEXTS = ['The quick brown fox, 日本 🦙', '  spaces\n\nand 12345 digits', '<|im_start|>user\nhi<|im_end|>\n'];

for (const c of cases) {
  test(`a GGUF export loads as the same model: ${c.name}`, async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rkv-gguf-load-'));
    try {
      writeRandomCheckpoint(dir, c.spec);
      const file = path.join(dir, 'model.gguf');
      await exportGguf(dir, file, { dtype: c.dtype });
      const hf = await Engine.load(dir, { threads: 2, weights: 'f32' });
      const gg = await Engine.load(file, { threads: 2, weights: 'f32' });
      try {
        const { ropeFreqFactors: _f, torchDtype: _d, eosTokenIds: eosG, ...cfgG } = gg.config;
        const { ropeFreqFactors: _h, torchDtype: _e, eosTokenIds: eosH, ropeScaling: scalingH, ...cfgH } = hf.config;
        // GGUF stores eps and rope theta as f32.
        const f32 = { rmsNormEps: Math.fround(cfgH.rmsNormEps), ropeTheta: Math.fround(cfgH.ropeTheta) };
        assert.deepEqual({ ...cfgG, ropeScaling: null, architecture: 'x' }, { ...cfgH, ...f32, ropeScaling: null, architecture: 'x' }, 'same hyperparameters');
        if (scalingH?.type === 'llama3') assert.ok(gg.config.ropeFreqFactors, 'llama3 scaling arrives as frequency factors');
        // The file's eos id, plus what llama.cpp also stops at by token text (e.g. <|endoftext|>).
        for (const id of eosH.filter((x) => x === hf.config.eosTokenIds[0])) assert.ok(eosG.includes(id), `eos ${id} kept`);
        for (const text of TEXTS) assert.deepEqual(gg.tokenizer.encode(text), hf.tokenizer.encode(text), JSON.stringify(text));
        assert.equal(gg.tokenizer.decode(gg.tokenizer.encode(TEXTS[0]!), { skipSpecialTokens: true }), TEXTS[0]);

        const prompt = hf.tokenizer.encode('Once upon a time, in a land far away');
        let worst = 0;
        const seqA = hf.newSequence();
        const seqB = gg.newSequence();
        const a = hf.model.forward([{ seq: seqA, tokens: prompt }])[0]!;
        const b = gg.model.forward([{ seq: seqB, tokens: prompt }])[0]!;
        seqA.release();
        seqB.release();
        for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
        t.diagnostic(`largest logit difference HF dir vs GGUF (${c.dtype}): ${worst.toExponential(2)} (tolerance ${c.tolerance})`);
        assert.ok(worst <= c.tolerance, `largest logit difference ${worst}`);
      } finally {
        await hf.close();
        await gg.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint, type RandomCheckpointSpec } from '../../src/model/random.ts';
import { exportGguf } from '../../src/model/gguf.ts';
import { Engine } from '../../src/engine/engine.ts';
import { llamaCppGreedy } from '../helpers/llamacpp.ts';

/**
 * Parity with an implementation this project did not write: llama.cpp (through its prebuilt npm
 * binding) runs the GGUF export of the same random checkpoint; its 32 greedy tokens must equal
 * ours, and its full-softmax top probabilities at the last prompt position must match ours.
 */
const PROB_TOLERANCE = 1e-4;
const N_TOKENS = 32;
const PROMPT = 'Once upon a time, in a land far away, there lived a';

const base = {
  hiddenSize: 96, intermediateSize: 256, numLayers: 3, numHeads: 6, numKvHeads: 2, vocab: 'bytes' as const,
  maxPositionEmbeddings: 512, dtype: 'F32' as const,
};

const cases: { name: string; spec: RandomCheckpointSpec }[] = [
  {
    name: 'Llama, llama3 rope scaling, GQA 3, untied embeddings',
    spec: { ...base, architecture: 'llama', seed: 21, tieWordEmbeddings: false, ropeTheta: 500000, ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 } },
  },
  { name: 'Qwen2, q/k/v biases, tied embeddings, GQA 3', spec: { ...base, architecture: 'qwen2', seed: 22, tieWordEmbeddings: true } },
  { name: 'Mistral, GQA 6 (one KV head)', spec: { ...base, architecture: 'mistral', seed: 23, tieWordEmbeddings: false, numKvHeads: 1 } },
];

for (const c of cases) {
  test(`32 greedy tokens and top probabilities equal llama.cpp's: ${c.name}`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rkv-parity-'));
    try {
      writeRandomCheckpoint(dir, c.spec);
      const gguf = join(dir, 'model.gguf');
      await exportGguf(dir, gguf, { dtype: 'f32' });
      const cpp = await llamaCppGreedy(gguf, PROMPT, N_TOKENS, { nProbs: 5 });

      const engine = await Engine.load(dir, { threads: 2, weights: 'f32' });
      try {
        const gen = engine.generate(PROMPT, { maxTokens: N_TOKENS, temperature: 0 });
        for await (const _ of gen) { /* drain */ }
        assert.equal(cpp.tokens.length, N_TOKENS, 'llama.cpp generated the full 32 tokens');
        assert.deepEqual(gen.tokens, cpp.tokens);

        const seq = engine.newSequence();
        const logits = engine.model.forward([{ seq, tokens: engine.encodePrompt(PROMPT) }])[0]!;
        seq.release();
        let max = -Infinity;
        for (const v of logits) max = Math.max(max, v);
        let sum = 0;
        for (const v of logits) sum += Math.exp(v - max);
        const top = cpp.topProbs!;
        assert.ok(top.length >= 3);
        let worst = 0;
        for (const { id, prob } of top) {
          const ours = Math.exp(logits[id]! - max) / sum;
          worst = Math.max(worst, Math.abs(ours - prob));
        }
        t.diagnostic(`tokens equal: ${gen.tokens.length}/${N_TOKENS}; largest top-${top.length} probability gap ${worst.toExponential(2)} (tolerance ${PROB_TOLERANCE})`);
        assert.ok(worst < PROB_TOLERANCE, `largest top-probability gap ${worst}`);
      } finally {
        await engine.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

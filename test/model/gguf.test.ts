import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeRandomCheckpoint, type RandomCheckpointSpec } from '../../src/model/random.ts';
import { exportGguf, readGgufHeader, permuteRopeRows, GGML_TYPE_F16, GGML_TYPE_F32 } from '../../src/model/gguf.ts';
import { parseConfig } from '../../src/model/config.ts';
import { openSafetensors } from '../../src/model/safetensors.ts';
import { Tokenizer } from '../../src/model/tokenizer.ts';
import { referenceLogits } from '../helpers/reference.ts';
import { llamaCppGreedy, llamaCppTokenize } from '../helpers/llamacpp.ts';

const base: Omit<RandomCheckpointSpec, 'architecture' | 'seed'> = {
  hiddenSize: 64, intermediateSize: 96, numLayers: 2, numHeads: 4, numKvHeads: 2, vocab: 'bytes',
  maxPositionEmbeddings: 256, tieWordEmbeddings: false, dtype: 'F32',
};

interface Case {
  name: string;
  spec: RandomCheckpointSpec;
  ggufDtype: 'f32' | 'f16';
}

const cases: Case[] = [
  { name: 'llama', spec: { ...base, architecture: 'llama', seed: 11 }, ggufDtype: 'f32' },
  { name: 'llama, llama3 rope scaling, bf16 weights', spec: { ...base, architecture: 'llama', seed: 12, dtype: 'BF16', ropeTheta: 10000, ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 32 } }, ggufDtype: 'f32' },
  { name: 'qwen2, tied embeddings', spec: { ...base, architecture: 'qwen2', seed: 13, tieWordEmbeddings: true }, ggufDtype: 'f32' },
  { name: 'qwen2 exported as f16', spec: { ...base, architecture: 'qwen2', seed: 14 }, ggufDtype: 'f16' },
  { name: 'mistral, one KV head', spec: { ...base, architecture: 'mistral', seed: 15, numKvHeads: 1 }, ggufDtype: 'f32' },
];

const PROMPT = 'The quick brown fox, 日本 🦙';
const N_PREDICT = 8;

function softmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const p = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += p[i] = Math.exp(logits[i] - max);
  for (let i = 0; i < p.length; i++) p[i] /= sum;
  return p;
}

function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

for (const c of cases) {
  test(`GGUF export runs in llama.cpp and matches the reference: ${c.name}`, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gguf-'));
    writeRandomCheckpoint(dir, c.spec);
    const ggufPath = path.join(dir, 'model.gguf');
    let progressCalls = 0;
    await exportGguf(dir, ggufPath, { dtype: c.ggufDtype, onProgress: () => progressCalls++ });
    assert.ok(progressCalls > 0);

    const cfg = parseConfig(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')), dir);
    const header = readGgufHeader(ggufPath);
    const arch = c.spec.architecture === 'qwen2' ? 'qwen2' : 'llama';
    assert.equal(header.version, 3);
    assert.equal(header.metadata.get('general.architecture'), arch);
    assert.equal(header.metadata.get(`${arch}.attention.head_count_kv`), c.spec.numKvHeads);
    assert.equal(header.metadata.get(`${arch}.rope.dimension_count`), cfg.headDim);
    const byName = new Map(header.tensors.map((t) => [t.name, t]));
    assert.deepEqual(byName.get('blk.0.ffn_down.weight')?.dims, [c.spec.intermediateSize, c.spec.hiddenSize], 'innermost dimension first');
    assert.equal(byName.get('blk.1.attn_q.weight')?.type, c.ggufDtype === 'f16' ? GGML_TYPE_F16 : GGML_TYPE_F32);
    assert.equal(byName.get('output_norm.weight')?.type, GGML_TYPE_F32);
    assert.equal(byName.has('output.weight'), !c.spec.tieWordEmbeddings);
    assert.equal(byName.has('blk.0.attn_q.bias'), arch === 'qwen2');
    assert.equal(byName.has('rope_freqs.weight'), c.spec.ropeScaling !== undefined);
    for (const t of header.tensors) assert.equal(t.offset % 32, 0);
    const tokens = header.metadata.get('tokenizer.ggml.tokens') as string[];
    assert.equal(new Set(tokens).size, tokens.length, 'no duplicated tokens');

    // The prompt as both tokenizers see it; llama.cpp adds BOS itself when the GGUF asks for it.
    const tok = await Tokenizer.load(dir);
    const promptIds = tok.encode(PROMPT);
    const cppIds = await llamaCppTokenize(ggufPath, PROMPT);
    assert.deepEqual(arch === 'qwen2' ? cppIds : [tok.bosTokenId, ...cppIds], promptIds);

    const cpp = await llamaCppGreedy(ggufPath, PROMPT, N_PREDICT);
    const src = await openSafetensors(dir);
    try {
      const seq = promptIds.slice();
      let firstLogits: Float32Array | null = null;
      for (let i = 0; i < cpp.tokens.length; i++) {
        const logits = referenceLogits(cfg, src, seq).at(-1)!;
        firstLogits ??= logits;
        seq.push(argmax(logits));
      }
      assert.equal(cpp.tokens.length, N_PREDICT, 'no early end of sequence in this random model');
      assert.deepEqual(cpp.tokens, seq.slice(promptIds.length), 'greedy tokens agree with the reference');
      const probs = softmax(firstLogits!);
      const tolerance = c.ggufDtype === 'f16' ? 2e-2 : 1e-3;
      for (const { id, prob } of cpp.topProbs!.slice(0, 3)) {
        assert.ok(Math.abs(probs[id] - prob) < tolerance, `token ${id}: llama.cpp ${prob}, reference ${probs[id]}`);
      }
    } finally {
      src.close();
    }
  });
}

test('our tokenizer matches llama.cpp on assorted prompts, special tokens included', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gguf-tok-'));
  writeRandomCheckpoint(dir, { ...base, architecture: 'qwen2', seed: 1 });
  const ggufPath = path.join(dir, 'model.gguf');
  await exportGguf(dir, ggufPath, { dtype: 'f32' });
  const tok = await Tokenizer.load(dir);
  for (const text of ['', 'plain ascii', 'naïve café — ok?', '<|im_start|>user\nhi<|im_end|>\n', '\u0000\u0001 ctrl', '😀😀 x']) {
    assert.deepEqual(await llamaCppTokenize(ggufPath, text), tok.encode(text), JSON.stringify(text));
  }
});

test('permuteRopeRows interleaves the two halves of each head', () => {
  // 2 heads of dim 4, 1 column: rows [a0 a1 b0 b1] per head become [a0 b0 a1 b1].
  const rows = new Float32Array([0, 1, 2, 3, 10, 11, 12, 13]);
  assert.deepEqual(Array.from(permuteRopeRows(rows, 2, 4, 1)), [0, 2, 1, 3, 10, 12, 11, 13]);
});

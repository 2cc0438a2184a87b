import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeRandomCheckpoint, type RandomCheckpointSpec } from '../../src/model/random.ts';
import { exportGguf } from '../../src/model/gguf.ts';
import { readGgufHeader, GgufValueType as T, type GgufHeader, type GgufValue } from '../../src/model/gguf-reader.ts';
import { openModelSource } from '../../src/model/source.ts';
import { Engine } from '../../src/engine/engine.ts';
import { llamaCppGreedy } from '../helpers/llamacpp.ts';
import { editGguf } from '../helpers/gguf-edit.ts';
import { smollm2Path, SMOLLM2_SKIP } from '../helpers/smollm2.ts';

/**
 * export-gguf takes any model the engine loads. GGUF -> GGUF re-exports the same model: tensor
 * infos and data byte for byte (Q/K rows unpermuted by the reader, permuted again by the writer),
 * every tokenizer.* key with its stored type, rope_freqs and rope scaling; so our logits and
 * tokenizer ids, and llama.cpp's greedy tokens, equal those of the source file. A quantized GGUF
 * exported to f32 computes exactly as the quantized file does under our engine.
 */
const base: Omit<RandomCheckpointSpec, 'architecture' | 'seed'> = {
  hiddenSize: 64, intermediateSize: 96, numLayers: 2, numHeads: 4, numKvHeads: 2, vocab: 'bytes',
  maxPositionEmbeddings: 256, tieWordEmbeddings: false, dtype: 'F32',
};

const cases: { name: string; spec: RandomCheckpointSpec; dtype: 'f32' | 'f16' }[] = [
  {
    name: 'llama, llama3 rope scaling as rope_freqs, f32',
    spec: { ...base, architecture: 'llama', seed: 41, ropeTheta: 10000, ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 32 } },
    dtype: 'f32',
  },
  { name: 'qwen2, biases, tied embeddings, f16', spec: { ...base, architecture: 'qwen2', seed: 42, tieWordEmbeddings: true }, dtype: 'f16' },
];

const TEXTS = ['The quick brown fox, 日本 🦙', '<s>hi</s> and </s>', '<|im_start|>user\nhi<|im_end|>\n<|endoftext|>', '  spaces\n\n12345'];
const PROMPT = 'Once upon a time, in a land far away';
const N_PREDICT = 8;

function tmpdir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'rkv-gguf-src-'));
}

function dataSection(file: string, h: GgufHeader): Buffer {
  return fs.readFileSync(file).subarray(h.dataOffset);
}

function tokenizerKeys(h: GgufHeader): Map<string, GgufValue> {
  return new Map([...h.typed].filter(([k]) => k.startsWith('tokenizer.')));
}

/** Our engine on a model file: last-position logits of the prompt, ids of TEXTS, and greedy tokens. */
async function probe(model: string, prompt: string, greedyTokens = 0): Promise<{ logits: Float32Array; ids: number[][]; greedy: number[] }> {
  const engine = await Engine.load(model, { threads: 2, weights: 'f32' });
  try {
    const tokens = engine.tokenizer.encode(prompt);
    const seq = engine.newSequence();
    const logits = engine.model.forward([{ seq, tokens }])[0]!.slice();
    seq.release();
    let greedy: number[] = [];
    if (greedyTokens > 0) {
      const gen = engine.generate({ tokens }, { maxTokens: greedyTokens, temperature: 0, ignoreEos: true });
      for await (const _ of gen) { /* drain */ }
      greedy = gen.tokens;
    }
    return { logits, ids: TEXTS.map((t) => engine.tokenizer.encode(t)), greedy };
  } finally {
    await engine.close();
  }
}

function largestDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

for (const c of cases) {
  test(`GGUF -> GGUF export is the same model: ${c.name}`, async (t) => {
    const dir = tmpdir();
    try {
      writeRandomCheckpoint(dir, c.spec);
      const first = path.join(dir, 'first.gguf');
      const second = path.join(dir, 'second.gguf');
      await exportGguf(dir, first, { dtype: c.dtype });
      let progressCalls = 0;
      await exportGguf(first, second, { dtype: c.dtype, onProgress: () => progressCalls++ });
      assert.ok(progressCalls > 0);

      const h1 = readGgufHeader(first);
      const h2 = readGgufHeader(second);
      assert.deepEqual(h2.tensors, h1.tensors, 'same tensor names, shapes, types and offsets');
      assert.ok(dataSection(second, h2).equals(dataSection(first, h1)), 'tensor data byte for byte');
      assert.deepEqual(tokenizerKeys(h2), tokenizerKeys(h1), 'tokenizer.* keys with their stored types');
      assert.equal(h2.tensors.some((x) => x.name === 'rope_freqs.weight'), c.spec.ropeScaling !== undefined);

      const cfg1 = (await openModelSource(first)).config;
      const cfg2 = (await openModelSource(second)).config;
      assert.deepEqual(cfg2, cfg1, 'same config, rope frequency factors included');
      if (c.spec.ropeScaling) assert.ok(cfg2.ropeFreqFactors, 'llama3 scaling survives as rope_freqs');

      const a = await probe(first, PROMPT);
      const b = await probe(second, PROMPT);
      assert.deepEqual(b.ids, a.ids, 'tokenizer ids, special tokens included');
      const worst = largestDiff(a.logits, b.logits);
      t.diagnostic(`largest logit difference first vs re-exported GGUF (${c.dtype}): ${worst}`);
      assert.equal(worst, 0);

      const cpp1 = await llamaCppGreedy(first, PROMPT, N_PREDICT);
      const cpp2 = await llamaCppGreedy(second, PROMPT, N_PREDICT);
      assert.equal(cpp2.tokens.length, N_PREDICT, 'llama.cpp loads the re-export and generates');
      assert.deepEqual(cpp2.tokens, cpp1.tokens, 'llama.cpp greedy tokens equal');
      t.diagnostic(`llama.cpp greedy tokens on both files: ${cpp2.tokens.join(' ')}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('every tokenizer.* key travels with its stored type; rope scaling as stored', async () => {
  const dir = tmpdir();
  try {
    writeRandomCheckpoint(dir, { ...base, architecture: 'llama', seed: 43 });
    const first = path.join(dir, 'first.gguf');
    await exportGguf(dir, first, { dtype: 'f32' });
    const extra: Record<string, GgufValue> = {
      'tokenizer.rkv.u8': { type: T.U8, value: 255 },
      'tokenizer.rkv.i8': { type: T.I8, value: -128 },
      'tokenizer.rkv.u16': { type: T.U16, value: 65535 },
      'tokenizer.rkv.i16': { type: T.I16, value: -32768 },
      'tokenizer.rkv.u64': { type: T.U64, value: 2 ** 40 + 3 },
      'tokenizer.rkv.i64': { type: T.I64, value: -(2 ** 40) - 3 },
      'tokenizer.rkv.f64': { type: T.F64, value: Math.PI },
      'tokenizer.rkv.u32s': { type: T.ARRAY, elemType: T.U32, value: [0, 1, 4294967295] },
      'tokenizer.rkv.i64s': { type: T.ARRAY, elemType: T.I64, value: [-1, 2 ** 33] },
      'tokenizer.rkv.f64s': { type: T.ARRAY, elemType: T.F64, value: [0.1, -2.5e300] },
      'tokenizer.rkv.u8s': { type: T.ARRAY, elemType: T.U8, value: [0, 7, 255] },
      'tokenizer.rkv.bools': { type: T.ARRAY, elemType: T.BOOL, value: [true, false] },
      'tokenizer.ggml.padding_token_id': { type: T.U64, value: 0 },
      'tokenizer.chat_template': { type: T.STRING, value: '{{ messages[0]["content"] }} ✓' },
      'llama.rope.scaling.type': { type: T.STRING, value: 'linear' },
      'llama.rope.scaling.factor': { type: T.F32, value: 2 },
      'llama.rope.scaling.original_context_length': { type: T.U32, value: 128 },
      'general.url': { type: T.STRING, value: 'not carried over' },
    };
    const edited = path.join(dir, 'edited.gguf');
    editGguf(first, edited, { set: extra });
    const second = path.join(dir, 'second.gguf');
    await exportGguf(edited, second, { dtype: 'f32' });

    const h1 = readGgufHeader(edited);
    const h2 = readGgufHeader(second);
    assert.deepEqual(tokenizerKeys(h2), tokenizerKeys(h1));
    for (const k of ['llama.rope.scaling.type', 'llama.rope.scaling.factor', 'llama.rope.scaling.original_context_length']) {
      assert.deepEqual(h2.typed.get(k), h1.typed.get(k), k);
    }
    assert.equal(h2.typed.has('general.url'), false, 'general.* describes the file written, not the source');
    assert.equal(h2.metadata.get('general.file_type'), 0);
    assert.deepEqual((await openModelSource(second)).config.ropeScaling, { type: 'linear', factor: 2 });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('exporting onto the input file is refused before anything is written', async () => {
  const dir = tmpdir();
  try {
    writeRandomCheckpoint(dir, { ...base, architecture: 'qwen2', seed: 44 });
    const file = path.join(dir, 'model.gguf');
    await exportGguf(dir, file, { dtype: 'f32' });
    const bytes = fs.statSync(file).size;
    await assert.rejects(exportGguf(file, path.join(dir, '.', 'model.gguf'), { dtype: 'f32' }), { name: 'UsageError', message: /is the model file itself/ });
    assert.equal(fs.statSync(file).size, bytes);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a llama GGUF with Q/K biases re-exports to the same model (bias rows unpermuted and permuted back)', async () => {
  const dir = tmpdir();
  try {
    writeRandomCheckpoint(dir, { ...base, architecture: 'qwen2', seed: 45 });
    const qwen = path.join(dir, 'qwen2.gguf');
    await exportGguf(dir, qwen, { dtype: 'f32' });
    // The same tensors relabelled llama: blk.*.attn_q.bias makes it a llama with attention biases.
    const h = readGgufHeader(qwen);
    const renamed: Record<string, GgufValue> = { 'general.architecture': { type: T.STRING, value: 'llama' } };
    for (const [k, v] of h.typed) if (k.startsWith('qwen2.')) renamed[`llama.${k.slice('qwen2.'.length)}`] = v;
    const llama = path.join(dir, 'llama-bias.gguf');
    editGguf(qwen, llama, { set: renamed, drop: [...h.typed.keys()].filter((k) => k.startsWith('qwen2.')) });
    const out = path.join(dir, 'out.gguf');
    await exportGguf(llama, out, { dtype: 'f32' });
    const a = readGgufHeader(llama);
    const b = readGgufHeader(out);
    const bytes = (file: string, hh: typeof a, name: string): Buffer => {
      const t = hh.tensors.find((x) => x.name === name)!;
      const n = t.dims.reduce((x, y) => x * y, 1) * 4;
      return fs.readFileSync(file).subarray(hh.dataOffset + t.offset, hh.dataOffset + t.offset + n);
    };
    for (const name of ['blk.0.attn_q.bias', 'blk.0.attn_k.bias', 'blk.0.attn_q.weight']) {
      assert.ok(bytes(llama, a, name).equals(bytes(out, b, name)), `${name} comes back in the file's own row order`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const smollm2 = smollm2Path();

test('SmolLM2 Q4_1 exported to f32 computes exactly as the Q4_1 file does, in llama.cpp too', { skip: smollm2 === null ? SMOLLM2_SKIP : false }, async (t) => {
  const dir = tmpdir();
  try {
    const out = path.join(dir, 'smollm2-f32.gguf');
    const started = Date.now();
    await exportGguf(smollm2!, out, { dtype: 'f32' });
    const h = readGgufHeader(out);
    assert.ok(h.tensors.every((x) => x.type === 0), 'every tensor is F32');
    t.diagnostic(`exported ${(fs.statSync(out).size / 2 ** 20).toFixed(0)} MiB in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    assert.deepEqual(tokenizerKeys(h), tokenizerKeys(readGgufHeader(smollm2!)));

    const prompt = 'The history of the printing press begins in';
    const q = await probe(smollm2!, prompt, N_PREDICT);
    const f = await probe(out, prompt);
    assert.deepEqual(f.ids, q.ids, 'tokenizer ids');
    const worst = largestDiff(q.logits, f.logits);
    t.diagnostic(`largest logit difference Q4_1 vs its f32 export: ${worst}`);
    // Both dequantize the same blocks to the same f32 values; nothing else differs.
    assert.ok(worst <= 1e-5, `largest logit difference ${worst}`);
    // The use case: llama.cpp on the f32 file computes on the weights our engine uses for the Q4_1 file.
    const cpp = await llamaCppGreedy(out, prompt, N_PREDICT);
    assert.deepEqual(cpp.tokens, q.greedy, 'llama.cpp greedy on the f32 export equals ours on the Q4_1 file');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

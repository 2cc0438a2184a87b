import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, ropeInvFreq, estimateMemory, type ModelConfig } from '../../src/model/config.ts';
import { ModelLoadError, UnsupportedArchitectureError } from '../../src/errors.ts';

const llama31 = {
  architectures: ['LlamaForCausalLM'],
  hidden_size: 2048,
  intermediate_size: 8192,
  num_hidden_layers: 16,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  head_dim: 64,
  vocab_size: 128256,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  max_position_embeddings: 131072,
  tie_word_embeddings: true,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  torch_dtype: 'bfloat16',
};

const qwen25 = {
  architectures: ['Qwen2ForCausalLM'],
  hidden_size: 896,
  intermediate_size: 4864,
  num_hidden_layers: 24,
  num_attention_heads: 14,
  num_key_value_heads: 2,
  vocab_size: 151936,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  rope_scaling: null,
  max_position_embeddings: 32768,
  tie_word_embeddings: true,
  use_sliding_window: false,
  sliding_window: 32768,
  bos_token_id: 151643,
  eos_token_id: 151645,
  torch_dtype: 'bfloat16',
};

const mistral = {
  architectures: ['MistralForCausalLM'],
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  vocab_size: 32000,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  max_position_embeddings: 32768,
  sliding_window: 4096,
  bos_token_id: 1,
  eos_token_id: 2,
  torch_dtype: 'bfloat16',
};

test('parses a Llama 3.1 config with llama3 rope scaling', () => {
  const c = parseConfig(llama31, '/m');
  assert.equal(c.architecture, 'llama');
  assert.equal(c.headDim, 64);
  assert.equal(c.numKvHeads, 8);
  assert.deepEqual(c.ropeScaling, { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  assert.deepEqual(c.eosTokenIds, [128001, 128008, 128009]);
  assert.equal(c.bosTokenId, 128000);
  assert.equal(c.tieWordEmbeddings, true);
  assert.equal(c.attentionBias, false);
  assert.equal(c.slidingWindow, null);
  assert.equal(c.torchDtype, 'bfloat16');
});

test('parses Qwen2: head_dim derived, attention bias always on, unused sliding window ignored', () => {
  const c = parseConfig(qwen25, '/m');
  assert.equal(c.architecture, 'qwen2');
  assert.equal(c.headDim, 64);
  assert.equal(c.attentionBias, true);
  assert.equal(c.slidingWindow, null);
  assert.equal(c.ropeScaling, null);
  assert.deepEqual(c.eosTokenIds, [151645]);
  assert.equal(parseConfig({ ...qwen25, use_sliding_window: true }, '/m').slidingWindow, 32768);
});

test('parses Mistral: sliding window kept, untied by default, legacy `type` rope key', () => {
  const c = parseConfig(mistral, '/m');
  assert.equal(c.architecture, 'mistral');
  assert.equal(c.slidingWindow, 4096);
  assert.equal(c.tieWordEmbeddings, false);
  assert.equal(c.headDim, 128);
  const lin = parseConfig({ ...mistral, rope_scaling: { type: 'linear', factor: 2 } }, '/m');
  assert.deepEqual(lin.ropeScaling, { type: 'linear', factor: 2 });
});

test('rejects unknown architectures naming the supported ones, and incomplete configs', () => {
  assert.throws(() => parseConfig({ ...mistral, architectures: ['GPT2LMHeadModel'] }, '/m'), (e: unknown) => {
    assert.ok(e instanceof UnsupportedArchitectureError);
    assert.match(e.message, /GPT2LMHeadModel/);
    assert.match(e.message, /LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM/);
    return true;
  });
  const { hidden_size: _drop, ...noHidden } = mistral;
  assert.throws(() => parseConfig(noHidden, '/m'), ModelLoadError);
  assert.throws(() => parseConfig({ ...mistral, rope_scaling: { rope_type: 'yarn', factor: 4 } }, '/m'), UnsupportedArchitectureError);
  assert.throws(() => parseConfig('nope', '/m'), ModelLoadError);
});

/**
 * Llama 3 scaling written from its definition by wavelength bands: keep frequencies whose
 * wavelength is under original/high, divide those over original/low by `factor`, and in between
 * interpolate 1/divisor linearly in (original/wavelength).
 */
function llama3Independent(headDim: number, theta: number, factor: number, low: number, high: number, original: number): number[] {
  const out: number[] = [];
  for (let k = 0; k < headDim; k += 2) {
    const f = 1 / theta ** (k / headDim);
    const periods = (original * f) / (2 * Math.PI); // rotations within the original context
    let divisor: number;
    if (periods > high) divisor = 1;
    else if (periods < low) divisor = factor;
    else {
      const t = (periods - low) / (high - low);
      divisor = 1 / (t + (1 - t) / factor);
    }
    out.push(f / divisor);
  }
  return out;
}

test('ropeInvFreq with llama3 scaling matches an independent band computation', () => {
  const c = parseConfig(llama31, '/m');
  const got = ropeInvFreq(c);
  const want = llama3Independent(64, 500000, 32, 1, 4, 8192);
  assert.equal(got.length, 32);
  let sawScaled = 0;
  let sawMiddle = 0;
  for (let i = 0; i < 32; i++) {
    assert.ok(Math.abs(got[i] - want[i]) <= 1e-6 * want[i], `i=${i}: ${got[i]} vs ${want[i]}`);
    const unscaled = 500000 ** (-(2 * i) / 64);
    const ratio = unscaled / got[i];
    if (Math.abs(ratio - 32) < 1e-4) sawScaled++;
    else if (ratio > 1 + 1e-4) sawMiddle++;
  }
  assert.ok(Math.abs(got[0] - 1) < 1e-7, 'highest frequency is never scaled');
  assert.ok(sawScaled > 0 && sawMiddle > 0, 'the test covers the scaled band and the blended band');
});

test('ropeInvFreq: plain and linear scaling', () => {
  const base: Pick<ModelConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'> = { headDim: 8, ropeTheta: 10000, ropeScaling: null };
  assert.deepEqual(Array.from(ropeInvFreq(base)), [1, 0.1, 0.01, 0.001].map((x) => Math.fround(x)));
  const lin = ropeInvFreq({ ...base, ropeScaling: { type: 'linear', factor: 4 } });
  assert.deepEqual(Array.from(lin), [0.25, 0.025, 0.0025, 0.00025].map((x) => Math.fround(x)));
});

test('estimateMemory counts Qwen2.5-0.5B parameters and KV bytes', () => {
  const c = parseConfig(qwen25, '/m');
  const est = estimateMemory(c, 'f32');
  // 494,032,768 is the published parameter count of Qwen2.5-0.5B (tied embeddings).
  assert.equal(est.parameterCount, 494032768);
  assert.equal(est.weightBytes, 494032768 * 4);
  assert.equal(est.kvBytesPer1kTokens, 2 * 24 * 2 * 64 * 4 * 1024);
  const q8 = estimateMemory(c, 'q8');
  assert.ok(q8.weightBytes < est.weightBytes / 3 && q8.weightBytes > est.weightBytes / 4);
});

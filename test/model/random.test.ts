import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeRandomCheckpoint, byteToUnicode, type RandomCheckpointSpec } from '../../src/model/random.ts';
import { openSafetensors } from '../../src/model/safetensors.ts';
import { parseConfig } from '../../src/model/config.ts';

const spec: RandomCheckpointSpec = {
  architecture: 'qwen2', hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2, vocab: 'bytes',
  maxPositionEmbeddings: 64, tieWordEmbeddings: false, dtype: 'F16', seed: 7,
};
const write = (s: RandomCheckpointSpec): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rand-'));
  writeRandomCheckpoint(dir, s);
  return dir;
};

test('same seed gives identical files; another seed different weights', () => {
  const a = write(spec);
  const b = write(spec);
  const c = write({ ...spec, seed: 8 });
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) {
    assert.ok(fs.readFileSync(path.join(a, f)).equals(fs.readFileSync(path.join(b, f))), f);
  }
  assert.ok(!fs.readFileSync(path.join(a, 'model.safetensors')).equals(fs.readFileSync(path.join(c, 'model.safetensors'))));
});

test('tensor names and shapes follow the Hugging Face layout', async () => {
  const dir = write(spec);
  const cfg = parseConfig(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')), dir);
  assert.equal(cfg.architecture, 'qwen2');
  assert.equal(cfg.vocabSize, 259);
  const st = await openSafetensors(dir);
  const names = new Set(st.names());
  const expected = ['model.embed_tokens.weight', 'model.norm.weight', 'lm_head.weight'];
  for (let l = 0; l < 2; l++) {
    for (const n of ['input_layernorm.weight', 'post_attention_layernorm.weight', 'mlp.gate_proj.weight', 'mlp.up_proj.weight', 'mlp.down_proj.weight']) expected.push(`model.layers.${l}.${n}`);
    for (const p of ['q', 'k', 'v']) expected.push(`model.layers.${l}.self_attn.${p}_proj.weight`, `model.layers.${l}.self_attn.${p}_proj.bias`);
    expected.push(`model.layers.${l}.self_attn.o_proj.weight`);
  }
  assert.deepEqual([...names].sort(), expected.sort());
  assert.deepEqual(st.info('model.layers.1.self_attn.k_proj.weight'), { dtype: 'F16', shape: [16, 32] });
  assert.deepEqual(st.info('model.layers.0.mlp.down_proj.weight').shape, [32, 48]);
  const norm = st.readF32('model.norm.weight');
  assert.ok(norm.every((v) => v > 0.5 && v < 1.5), 'norm weights near 1');
  st.close();

  const tied = write({ ...spec, architecture: 'llama', tieWordEmbeddings: true });
  const st2 = await openSafetensors(tied);
  assert.ok(!st2.names().includes('lm_head.weight'));
  assert.ok(!st2.names().some((n) => n.endsWith('.bias')));
  st2.close();
});

test('tokenizer.json: 256 byte tokens, special tokens only in added_tokens', () => {
  const dir = write({ ...spec, architecture: 'llama' });
  const tj = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')) as {
    model: { vocab: Record<string, number> }; added_tokens: { id: number; content: string }[];
  };
  const vocabIds = Object.values(tj.model.vocab);
  assert.equal(vocabIds.length, 256);
  assert.equal(new Set(byteToUnicode()).size, 256);
  assert.equal(tj.model.vocab[byteToUnicode()[0x20]], 0x20);
  assert.equal(byteToUnicode()[0x20], 'Ġ');
  assert.deepEqual(tj.added_tokens.map((t) => [t.id, t.content]), [[256, '<s>'], [257, '</s>']]);
  for (const t of tj.added_tokens) assert.ok(!vocabIds.includes(t.id));
});

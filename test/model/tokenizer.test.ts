import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeRandomCheckpoint, type RandomCheckpointSpec } from '../../src/model/random.ts';
import { Tokenizer, StreamDecoder } from '../../src/model/tokenizer.ts';
import { UsageError } from '../../src/errors.ts';

function checkpoint(architecture: RandomCheckpointSpec['architecture']): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `tok-${architecture}-`));
  writeRandomCheckpoint(dir, {
    architecture, hiddenSize: 16, intermediateSize: 32, numLayers: 1, numHeads: 2, numKvHeads: 1, vocab: 'bytes',
    maxPositionEmbeddings: 128, tieWordEmbeddings: true, dtype: 'F32', seed: 3,
  });
  return dir;
}

const llamaDir = checkpoint('llama');
const qwenDir = checkpoint('qwen2');
const texts = ['Hello, world!', 'héllo wörld', '日本語のテキスト', 'emoji 🦙🚀 mixed ascii', '  leading and trailing  \n\ttabs'];

test('byte tokens: ids are the UTF-8 bytes, BOS added for llama only, roundtrip exact', async () => {
  const llama = await Tokenizer.load(llamaDir);
  const qwen = await Tokenizer.load(qwenDir);
  assert.equal(llama.bosTokenId, 256);
  assert.deepEqual(llama.eosTokenIds, [257]);
  assert.equal(llama.vocabSize, 258);
  assert.equal(qwen.bosTokenId, null);
  assert.deepEqual(qwen.eosTokenIds.sort(), [256, 258]);
  assert.equal(qwen.vocabSize, 259);
  for (const text of texts) {
    const bytes = [...Buffer.from(text, 'utf8')];
    assert.deepEqual(llama.encode(text), [256, ...bytes]);
    assert.deepEqual(llama.encode(text, { addSpecialTokens: false }), bytes);
    assert.deepEqual(qwen.encode(text), bytes);
    assert.equal(llama.decode(llama.encode(text), { skipSpecialTokens: true }), text);
    assert.equal(llama.decode(llama.encode(text)), '<s>' + text);
    assert.equal(qwen.decode(qwen.encode(text)), text);
  }
});

test('special tokens in text are recognised as single ids', async () => {
  const qwen = await Tokenizer.load(qwenDir);
  assert.deepEqual(qwen.encode('a<|im_end|>b'), [97, 258, 98]);
  assert.equal(qwen.decode([97, 258, 98], { skipSpecialTokens: true }), 'ab');
});

test('StreamDecoder emits only complete characters, whatever the split', async () => {
  const tok = await Tokenizer.load(llamaDir);
  for (const text of texts) {
    const ids = tok.encode(text, { addSpecialTokens: false });
    const dec = new StreamDecoder(tok);
    const pieces = ids.map((id) => dec.push(id));
    pieces.push(dec.flush());
    assert.equal(pieces.join(''), text);
    for (const p of pieces) assert.ok(!p.includes('\uFFFD'), `piece ${JSON.stringify(p)} of ${JSON.stringify(text)}`);
  }
  // 🦙 is 4 bytes: nothing comes out until the last one arrives.
  const dec = new StreamDecoder(tok);
  const llamaBytes = [...Buffer.from('🦙')];
  assert.deepEqual(llamaBytes.map((b) => dec.push(b)), ['', '', '', '🦙']);
  // A dangling partial character is released (as U+FFFD) by flush.
  const d2 = new StreamDecoder(tok);
  assert.equal(d2.push(0xe6), '');
  assert.equal(d2.flush(), '\uFFFD');
});

test('chat templates render and encode without a second BOS', async () => {
  const llama = await Tokenizer.load(llamaDir);
  const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi ü' }];
  const text = llama.applyChatTemplate(messages, { addGenerationPrompt: true });
  assert.equal(text, '<s><|system|>\nBe brief.</s>\n<|user|>\nHi ü</s>\n<|assistant|>\n');
  const ids = llama.encodeChat(messages);
  assert.equal(ids[0], 256);
  assert.notEqual(ids[1], 256);
  assert.equal(ids.filter((i) => i === 257).length, 2);
  assert.equal(llama.decode(ids), text);

  const qwen = await Tokenizer.load(qwenDir);
  assert.equal(qwen.applyChatTemplate([{ role: 'user', content: 'x' }], { addGenerationPrompt: true }), '<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n');
});

test('a model without a chat template gives a UsageError', async () => {
  const dir = checkpoint('mistral');
  const cfgPath = path.join(dir, 'tokenizer_config.json');
  const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
  delete cfg.chat_template;
  fs.writeFileSync(cfgPath, JSON.stringify(cfg));
  const tok = await Tokenizer.load(dir);
  assert.equal(tok.hasChatTemplate, false);
  assert.throws(() => tok.applyChatTemplate([{ role: 'user', content: 'x' }], { addGenerationPrompt: true }), (e: unknown) => e instanceof UsageError && /no chat template/.test(e.message));
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openModelSource } from '../../src/model/source.ts';
import { readGgufHeader } from '../../src/model/gguf-reader.ts';
import { Engine } from '../../src/engine/engine.ts';
import type { Tokenizer } from '../../src/model/tokenizer.ts';
import { llamaCppTokenizeMany } from '../helpers/llamacpp.ts';
import { hasPythonReference, hfReference, PYTHON_SKIP } from '../helpers/smollm2.ts';

/**
 * The SentencePiece (`tokenizer.ggml.model = "llama"`) path of src/model/gguf-tokenizer.ts on a
 * tiny llama model made by tools/fixtures/make_spm_gguf.py: merges derived from scores, the "▁"
 * prefix and space replacement, byte fallback, <s>/</s> matched inside text. References: llama.cpp
 * (special tokens parsed, no BOS) and transformers' GGUF converter (add_special_tokens=False), the
 * acceptance reference. On every text below the two agree with each other, so both are asserted.
 */
const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'spm-tiny.gguf');
const SPACE = '\u2581';

const TEXTS = [
  // Words in the vocabulary, and out of it (pieces, then single characters).
  'hello world', 'Hello World!', 'the quick brown fox jumps over the lazy dog.', 'thehello', 'worldworld',
  'thinking things', 'zebra xylophone quartz', 'Mississippi', 'HELLO', 'x', '',
  // Leading, trailing and repeated spaces; newlines, tabs, CR.
  ' hello', '  hello', 'hello ', 'hello  ', ' ', '   ', 'hello   world', 'hello\nworld', '\n', '\n\nhello\n',
  'line one\n\nline two', 'tab\there', '\r\n', '  \n  ', SPACE + 'hello', SPACE + SPACE,
  // Digits and punctuation.
  '2024 and 365 days, 42', '1234567890', '3.14159', '$100', 'a.b.c', 'end.\n',
  // Accents in the vocabulary and out of it (À É Î Õ, combining accent), CJK in and out, emoji.
  'café crème brûlée', 'naïve résumé über straße', 'ÀÉÎÕÜ', 'e\u0301', '日本', '日本語を話す。', '你好世界',
  'emoji 🦙🚀 ok', 'a\u00a0b', '\u0000',
  // Control tokens inside text (the text after one gets the "▁" prefix again), and look-alikes.
  '<s>', '</s>', '<s>hello</s>', 'hello <s> world </s>', '<s> hello', 'a<s>b', '</s><s>', '<s> </s>',
  'hello\n<s>\nworld', '<s', 's>', '<S>', '<unk>', 'hello<unk>world',
];

let tokenizerPromise: Promise<Tokenizer> | undefined;
const tokenizer = (): Promise<Tokenizer> => (tokenizerPromise ??= openModelSource(FIXTURE).then((s) => s.loadTokenizer()));

function vocabulary(): { tokens: string[]; types: number[] } {
  const meta = readGgufHeader(FIXTURE).metadata;
  return { tokens: meta.get('tokenizer.ggml.tokens') as string[], types: meta.get('tokenizer.ggml.token_type') as number[] };
}

function assertSameIds(ours: number[][], theirs: number[][], who: string): void {
  assert.equal(theirs.length, TEXTS.length);
  const wrong = TEXTS.flatMap((text, i) => (JSON.stringify(ours[i]) === JSON.stringify(theirs[i]) ? [] : [`${JSON.stringify(text)}: ours ${JSON.stringify(ours[i])}, ${who} ${JSON.stringify(theirs[i])}`]));
  assert.deepEqual(wrong, [], `token ids differ from ${who}'s`);
}

test('SentencePiece GGUF: hand-checked pieces (prefix, byte fallback, control tokens)', async () => {
  const tok = await tokenizer();
  const pieces = (text: string): string[] => tok.encode(text, { addSpecialTokens: false }).map((id) => tok.tokenText(id));
  assert.deepEqual(pieces('hello world'), [`${SPACE}hello`, `${SPACE}world`]);
  assert.deepEqual(pieces('你'), [SPACE, '<0xE4>', '<0xBD>', '<0xA0>'], 'a character outside the vocabulary falls back to its UTF-8 bytes');
  assert.deepEqual(pieces('<s>hello</s>'), ['<s>', `${SPACE}hello`, '</s>']);
  assert.deepEqual(pieces('hello  '), [`${SPACE}hello`, SPACE, SPACE]);
});

test('SentencePiece GGUF: token ids equal llama.cpp\'s', async () => {
  const tok = await tokenizer();
  const ours = TEXTS.map((t) => tok.encode(t, { addSpecialTokens: false }));
  assertSameIds(ours, await llamaCppTokenizeMany(FIXTURE, TEXTS), 'llama.cpp');
});

test('SentencePiece GGUF: token ids equal transformers\'', { skip: hasPythonReference() ? false : PYTHON_SKIP }, async () => {
  const tok = await tokenizer();
  const ours = TEXTS.map((t) => tok.encode(t, { addSpecialTokens: false }));
  assertSameIds(ours, hfReference(FIXTURE, TEXTS, []).ids, 'transformers');
});

test('SentencePiece GGUF: BOS, decode round trip, chat template', async () => {
  const tok = await tokenizer();
  assert.equal(tok.bosTokenId, 1);
  assert.deepEqual(tok.eosTokenIds, [2]);
  for (const text of ['hello world', ' two  spaces ', '']) {
    assert.deepEqual(tok.encode(text, { addSpecialTokens: true }), [1, ...tok.encode(text, { addSpecialTokens: false })], `add_bos_token: ${JSON.stringify(text)}`);
  }
  const roundTrip = ['hello world', 'the quick brown fox jumps over the lazy dog.', ' hello', 'hello   world\n', 'café crème brûlée', '日本語を話す。', '2024 and 42', 'emoji 🦙 and 你好 by bytes'];
  for (const text of roundTrip) assert.equal(tok.decode(tok.encode(text, { addSpecialTokens: false })), text);
  assert.equal(tok.decode(tok.encode('<s>hello</s>', { addSpecialTokens: false }), { skipSpecialTokens: true }), 'hello');

  const messages = [{ role: 'user', content: 'hello' }];
  assert.equal(tok.applyChatTemplate(messages, { addGenerationPrompt: true }), '<s>[INST] hello [/INST]');
  assert.deepEqual(tok.encodeChat(messages).filter((id) => id === 1), [1], 'the template places BOS once');
});

/**
 * llama.cpp's greedy pieces (its tokens_to_output_formatted_string). Not llamaCppGreedy: that
 * helper maps pieces back to ids through byte-level BPE's alphabet, where no "▁" piece or ASCII
 * byte token has an entry and a lone byte token lands on a Latin-1 piece (<0xDF> on "ß").
 * A child process, retried, for the reasons in test/helpers/llamacpp-child.ts.
 */
function llamaCppGreedyPieces(prompt: string, nPredict: number): string[] {
  const code = `
    import { loadModel } from '@fugood/llama.node';
    const [model, prompt, n] = JSON.parse(process.argv[1]);
    const ctx = await loadModel({ model, n_ctx: 256, n_threads: 2, n_gpu_layers: 0, cache_type_k: 'f32', cache_type_v: 'f32', flash_attn_type: 'off' });
    const r = await ctx.completion({ prompt, n_predict: n, temperature: 0, top_k: 1, n_probs: 1 });
    process.stdout.write('\\nRESULT ' + JSON.stringify((r.completion_probabilities ?? []).map((p) => p.content)) + '\\n');
    process.exit(0);`;
  let failure = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code, JSON.stringify([FIXTURE, prompt, nPredict])], { cwd: ROOT, encoding: 'utf8', maxBuffer: 16 << 20 });
    const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
    if (line) return JSON.parse(line.slice('RESULT '.length)) as string[];
    failure = `llama.cpp child ended with ${r.signal ?? r.status}:\n${r.stderr.slice(-3000)}`;
  }
  throw new Error(failure);
}

/** A token as llama.cpp prints it: "▁" as a space, a byte token as its byte ("byte: \xNN" from 0x80). */
function llamaCppPiece(tokens: string[], types: number[], id: number): string {
  const TOKEN_BYTE = 6;
  if (types[id] !== TOKEN_BYTE) return tokens[id]!.replaceAll(SPACE, ' ');
  const b = parseInt(tokens[id]!.slice(3, 5), 16);
  return b >= 0x80 ? `byte: \\x${b.toString(16)}` : String.fromCharCode(b);
}

test('the SentencePiece GGUF model runs: greedy tokens equal llama.cpp\'s and transformers\'', async (t) => {
  const PROMPT = 'hello world';
  const N = 4;
  const engine = await Engine.load(FIXTURE, { threads: 2, weights: 'f32' });
  let prompt: number[];
  let ours: number[];
  try {
    prompt = engine.tokenizer.encode(PROMPT);
    const gen = engine.generate(PROMPT, { maxTokens: N, temperature: 0 });
    for await (const _ of gen) { /* drain */ }
    ours = gen.tokens;
  } finally {
    await engine.close();
  }
  assert.equal(prompt[0], 1, 'generate(text) starts from BOS, as llama.cpp does for add_bos_token files');
  assert.equal(ours.length, N);

  // A piece names a token up to one ambiguity: an ASCII byte token prints like its one-character
  // piece (<0x78> and "x"); the transformers check below compares ids.
  const { tokens, types } = vocabulary();
  t.diagnostic(`greedy: ${JSON.stringify(ours.map((id) => tokens[id]))}`);
  assert.deepEqual(ours.map((id) => llamaCppPiece(tokens, types, id)), llamaCppGreedyPieces(PROMPT, N));

  if (!hasPythonReference()) {
    t.diagnostic(PYTHON_SKIP);
    return;
  }
  const prefixes = Array.from({ length: N }, (_, i) => [...prompt, ...ours.slice(0, i)]);
  const { logits } = hfReference(FIXTURE, [], prefixes);
  const argmax = (v: Float32Array): number => v.reduce((best, x, i) => (x > v[best]! ? i : best), 0);
  assert.deepEqual(logits.map(argmax), ours, 'transformers\' argmax after each prefix');
});

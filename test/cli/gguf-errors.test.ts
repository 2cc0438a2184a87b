import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { exportGguf } from '../../src/model/gguf.ts';
import { readGgufHeader, GgufValueType as T } from '../../src/model/gguf-reader.ts';
import { editGguf, type GgufEdits } from '../helpers/gguf-edit.ts';
import { runCli, assertOneLineError, type CliResult } from '../helpers/cli.ts';

/** Every kind of bad GGUF input ends in one line on stderr, a non-zero exit and no stack trace. */
let root = '';
let good = '';
const cli = (args: string[]): CliResult => runCli(args);

function bad(name: string, edits: GgufEdits): string {
  const file = join(root, `${name}.gguf`);
  editGguf(good, file, edits);
  return file;
}

before(async () => {
  root = fs.mkdtempSync(join(tmpdir(), 'rkv-gguf-bad-'));
  const dir = join(root, 'ckpt');
  writeRandomCheckpoint(dir, {
    architecture: 'llama', hiddenSize: 64, intermediateSize: 128, numLayers: 1, numHeads: 2, numKvHeads: 1,
    vocab: 'bytes', maxPositionEmbeddings: 128, tieWordEmbeddings: true, dtype: 'F32', seed: 5,
  });
  good = join(root, 'good.gguf');
  await exportGguf(dir, good, { dtype: 'f32' });
});
after(() => fs.rmSync(root, { recursive: true, force: true }));

test('the unedited file runs (the edits below are what breaks them)', () => {
  const copy = bad('copy', {});
  const r = cli(['run', '--model', copy, 'hello', '-n', '2']);
  assert.equal(r.code, 0, r.stderr);
});

const cases: { name: string; make: () => string; error: RegExp; command?: string }[] = [
  { name: 'wrong magic', make: () => bad('magic', { magic: 0x12345678 }), error: /is not a GGUF file/ },
  { name: 'unsupported version', make: () => bad('version', { version: 1 }), error: /GGUF version 1 is not supported/ },
  { name: 'unsupported architecture', make: () => bad('arch', { set: { 'general.architecture': { type: T.STRING, value: 'gemma3' } } }), error: /architecture gemma3 is not supported; supported GGUF architectures: llama, qwen2/ },
  {
    name: 'unsupported tensor type',
    // IQ4_NL has Q4_0's block geometry (32 elements in 18 bytes), so the data still fits.
    make: () => bad('type', { tensor: (t) => (t.name === 'blk.0.attn_q.weight' ? { ...t, type: 20 } : t) }),
    error: /tensor type not supported: blk\.0\.attn_q\.weight \(IQ4_NL\); supported types: .*Q4_K/,
  },
  {
    name: 'truncated tensor data',
    make: () => {
      const file = bad('truncated', {});
      fs.truncateSync(file, fs.statSync(file).size - 4096);
      return file;
    },
    error: /needs bytes \d+\.\.\d+ of the data section but the file holds \d+; it is truncated/,
  },
  {
    name: 'tensor offset past the end',
    make: () => bad('offset', { tensor: (t) => (t.name === 'output_norm.weight' ? { ...t, offset: 1 << 30 } : t) }),
    error: /tensor output_norm\.weight needs bytes 1073741824\.\./,
  },
  {
    name: 'header cut short',
    make: () => {
      const file = bad('short', {});
      fs.truncateSync(file, 200);
      return file;
    },
    error: /ends inside its header/,
  },
  { name: 'metadata of the wrong type', make: () => bad('meta-type', { set: { 'llama.block_count': { type: T.STRING, value: '1' } } }), error: /metadata llama\.block_count must be an integer, but it is stored as string/ },
  { name: 'metadata missing', make: () => bad('meta-missing', { drop: ['llama.embedding_length'] }), error: /metadata llama\.embedding_length is missing/ },
  { name: 'tokenizer of an unknown model', make: () => bad('tok-model', { set: { 'tokenizer.ggml.model': { type: T.STRING, value: 'bert' } } }), error: /tokenizer model "bert" .* is not supported; supported: gpt2/ },
  { name: 'tokenizer with an unknown pre-tokenizer', make: () => bad('tok-pre', { set: { 'tokenizer.ggml.pre': { type: T.STRING, value: 'no-such-pre' } } }), error: /pre-tokenizer "no-such-pre" .* is not supported/ },
  { name: 'tokenizer token types of the wrong length', make: () => bad('tok-types', { set: { 'tokenizer.ggml.token_type': { type: T.ARRAY, elemType: T.I32, value: [1, 1, 1] } } }), error: /token_type has 3 entries for \d+ tokens/ },
  { name: 'a negative rope scaling factor', make: () => bad('rope', { set: { 'llama.rope.scaling.type': { type: T.STRING, value: 'linear' }, 'llama.rope.scaling.factor': { type: T.F32, value: -2 } } }), error: /rope\.scaling\.factor must be positive/ },
  { name: 'a mixture-of-experts model', make: () => bad('moe', { set: { 'llama.expert_count': { type: T.U32, value: 8 } } }), error: /mixture-of-experts model \(8 experts\) is not supported/ },
  { name: 'a removed tensor type', make: () => bad('removed', { tensor: (t) => (t.name === 'blk.0.attn_q.weight' ? { ...t, type: 4 } : t) }), error: /tensor blk\.0\.attn_q\.weight: ggml type .* was removed from ggml/ },
  { name: 'a .gguf path that does not exist', make: () => join(root, 'nope.gguf'), error: /does not exist/ },
];

for (const c of cases) {
  test(`bad GGUF input, one-line error: ${c.name}`, () => {
    const file = c.make();
    assertOneLineError(cli(['run', '--model', file, 'hello', '-n', '2']), c.error);
  });
}

test('inspect shows the quantization mix and reads the header only', () => {
  const r = cli(['inspect', '--model', good]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /format\s+GGUF v3/);
  const tensors = readGgufHeader(good).tensors.length;
  assert.match(r.stdout, new RegExp(`quantization\\s+F32: ${tensors} tensors`));
  // A tensor type the engine cannot run is shown, not refused: inspect is for finding out.
  const odd = bad('inspect-type', { tensor: (t) => (t.name === 'blk.0.attn_q.weight' ? { ...t, type: 20 } : t) });
  const r2 = cli(['inspect', '--model', odd]);
  assert.equal(r2.code, 0, r2.stderr);
  assert.match(r2.stdout, /IQ4_NL: 1 tensor.*not supported/);
});

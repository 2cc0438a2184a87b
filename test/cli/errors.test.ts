import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, mkdirSync, cpSync, openSync, ftruncateSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { runCli, assertOneLineError, type CliResult } from '../helpers/cli.ts';

let root = '';
let good = '';

function cli(args: string[]): CliResult {
  return runCli(args, { ...process.env, XDG_CACHE_HOME: join(root, 'cache') });
}

function variant(name: string, edit: (dir: string) => void): string {
  const dir = join(root, name);
  cpSync(good, dir, { recursive: true });
  edit(dir);
  return dir;
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'rkv-cli-'));
  good = join(root, 'good');
  await writeRandomCheckpoint(good, {
    architecture: 'llama', hiddenSize: 64, intermediateSize: 128, numLayers: 1, numHeads: 2, numKvHeads: 1,
    vocab: 'bytes', maxPositionEmbeddings: 48, tieWordEmbeddings: true, dtype: 'F32', seed: 1,
  });
});

after(() => rmSync(root, { recursive: true, force: true }));

test('a good model runs', () => {
  const r = cli(['run', '--model', good, '-n', '4', 'hi']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /generated 4 tokens/);
  assert.match(r.stderr, /KV method full: .* stored vs .* for the full cache/);
  assert.match(r.stderr, /read per decode step/);
});

test('missing model directory', () => {
  assertOneLineError(cli(['run', '--model', join(root, 'nope'), 'hi']), /does not exist/);
});

test('directory without config.json', () => {
  const dir = join(root, 'empty');
  mkdirSync(dir);
  assertOneLineError(cli(['inspect', '--model', dir]), /config\.json/);
});

test('unsupported architecture', () => {
  const dir = variant('gpt2', (d) => {
    const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
    cfg.architectures = ['GPT2LMHeadModel'];
    writeFileSync(join(d, 'config.json'), JSON.stringify(cfg));
  });
  assertOneLineError(cli(['run', '--model', dir, 'hi']), /GPT2LMHeadModel/);
});

test('truncated safetensors: header length past the end of the file', () => {
  const dir = variant('trunc-header', (d) => {
    const fd = openSync(join(d, 'model.safetensors'), 'r+');
    ftruncateSync(fd, 20);
    closeSync(fd);
  });
  assertOneLineError(cli(['run', '--model', dir, 'hi']), /safetensors/i);
});

test('truncated safetensors: tensor offsets past the end of the data', () => {
  const dir = variant('trunc-data', (d) => {
    const p = join(d, 'model.safetensors');
    const buf = readFileSync(p);
    writeFileSync(p, buf.subarray(0, buf.length - 1000));
  });
  assertOneLineError(cli(['run', '--model', dir, 'hi']), /safetensors/i);
});

test('a model that does not fit in wasm32 memory', () => {
  const dir = variant('huge', (d) => {
    const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
    Object.assign(cfg, { hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 128256 });
    writeFileSync(join(d, 'config.json'), JSON.stringify(cfg));
  });
  assertOneLineError(cli(['run', '--model', dir, '--weights', 'f32', 'hi']), /4 GiB/);
  assertOneLineError(cli(['run', '--model', dir, '--weights', 'q8', 'hi']), /4 GiB/);
  const r = cli(['inspect', '--model', dir]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /does NOT fit/);
});

test('a prompt longer than the context', () => {
  assertOneLineError(cli(['run', '--model', good, 'x'.repeat(100)]), /context is 48/);
});

test('bad option values', () => {
  assertOneLineError(cli(['run', '--model', good, '--weights', 'q4', 'hi']), /f32 or q8/);
  const r = cli(['run', '--model', good, '--max-tokens', 'many', 'hi']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /max-tokens/);
});

test('KV flags: compression is reported, and bad settings fail before any work', () => {
  const r = cli(['run', '--model', good, '-n', '4', '--kv-method', 'streaming_llm', '--kv-budget', '16', 'a prompt of some forty-odd characters...']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /KV method streaming_llm budget 16: .* \(compression [1-9][0-9.]*x\); KVs per head min 19 /);
  // The model directory does not exist: each KV error must come first, before any loading.
  const nope = join(root, 'nope');
  assertOneLineError(cli(['run', '--model', nope, '--kv-method', 'h2o', '--kv-budget', '8', 'x']), /unknown KV method 'h2o'; choose one of: full, rocketkv, .*kvcompress/);
  assertOneLineError(cli(['run', '--model', nope, '--kv-method', 'rocketkv', '--kv-budget', '0', 'x']), /budget must be a positive integer/);
  assertOneLineError(cli(['run', '--model', nope, '--kv-method', 'rocketkv', '--kv-budget', '12.5', 'x']), /budget must be a positive integer/);
  assertOneLineError(cli(['run', '--model', nope, '--kv-method', 'rocketkv', 'x']), /budget must be a positive integer/);
  assertOneLineError(cli(['run', '--model', nope, '--kv-method', 'snapkv', '--kv-budget', '8', '--kv-opt', 'colour=red', 'x']), /unknown option 'colour'; valid options: window, kernel, pooling, gqa/);
  assertOneLineError(cli(['run', '--model', nope, '--kv-method', 'snapkv', '--kv-budget', '8', '--kv-opt', 'window=wide', 'x']), /option window must be an integer/);
  assertOneLineError(cli(['run', '--model', nope, '--kv-method', 'snapkv', '--kv-budget', '8', '--kv-opt', 'gqa=sideways', 'x']), /option gqa must be one of expand\|group/);
});

test('methods lists every method with its defaults', () => {
  const r = cli(['methods']);
  assert.equal(r.code, 0);
  for (const m of ['full', 'rocketkv', 'rocketkv-mt', 'kvcompress', 'streaming_llm', 'snapkv', 'snapkv++', 'pyramidkv', 'adakv', 'quest', 'sparq', 'hybrid', 'exact_topk']) {
    assert.match(r.stdout, new RegExp(`^${m.replace(/\+/g, '\\+')}\\s`, 'm'), m);
  }
  assert.match(r.stdout, /kvcompress .*metric_window=8 pooling=max protected_window=8 continual=false/);
});

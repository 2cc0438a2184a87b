import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, mkdirSync, cpSync, openSync, ftruncateSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeRandomCheckpoint } from '../../src/model/random.ts';

const entry = fileURLToPath(new URL('../helpers/rocketkv.ts', import.meta.url));
let root = '';
let good = '';

function cli(args: string[]): { code: number; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', entry, ...args], { encoding: 'utf8', env: { ...process.env, XDG_CACHE_HOME: join(root, 'cache') } });
  return { code: r.status ?? -1, stderr: r.stderr, stdout: r.stdout };
}

/** Exactly one line on stderr, naming the problem, and no stack trace. */
function assertOneLineError(r: { code: number; stderr: string }, pattern: RegExp): void {
  assert.notEqual(r.code, 0, 'exit code must be non-zero');
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^rocketkv: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
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
  assert.match(r.stderr, /KV: /);
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

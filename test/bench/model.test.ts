import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { exportGguf } from '../../src/model/gguf.ts';
import type { ModelBenchReport } from '../../src/bench/model.ts';

/**
 * `bench model` and `bench decode --model` end to end on a tiny random model and its GGUF export.
 * Speed is only printed, never asserted: the figures must be there, finite and positive.
 */
const entry = fileURLToPath(new URL('../helpers/rocketkv.ts', import.meta.url));
let root = '';
let dir = '';
let gguf = '';

function cli(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', entry, ...args], { encoding: 'utf8', timeout: 300_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The tok/s figures of a summary line (`prefill  32 tokens: rocketkv X tok/s, llama.cpp Y tok/s, ratio Zx`). */
function summaryLine(stdout: string, name: 'prefill' | 'decode'): { ours: number; peer?: number; ratio?: number } {
  const line = stdout.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `no ${name} summary line in:\n${stdout}`);
  const withPeer = /rocketkv ([\d.]+) tok\/s, llama\.cpp ([\d.]+) tok\/s, ratio ([\d.]+)x$/.exec(line);
  if (withPeer) return { ours: Number(withPeer[1]), peer: Number(withPeer[2]), ratio: Number(withPeer[3]) };
  const alone = /rocketkv ([\d.]+) tok\/s \(no peer\)$/.exec(line);
  assert.ok(alone, `unexpected ${name} line: ${line}`);
  return { ours: Number(alone[1]) };
}

const positive = (x: number | undefined, what: string): void => {
  assert.ok(x !== undefined && Number.isFinite(x) && x > 0, `${what} should be a finite positive number, got ${x}`);
};

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'rkv-bench-model-'));
  dir = join(root, 'model');
  writeRandomCheckpoint(dir, {
    architecture: 'llama', hiddenSize: 64, intermediateSize: 96, numLayers: 2, numHeads: 4, numKvHeads: 2, vocab: 'bytes',
    maxPositionEmbeddings: 256, tieWordEmbeddings: false, dtype: 'F32', seed: 41,
  });
  gguf = join(root, 'model.gguf');
  await exportGguf(dir, gguf, { dtype: 'f32' });
});

after(() => rmSync(root, { recursive: true, force: true }));

test('bench model: ours beside llama.cpp on the same GGUF, summary with ratios and a JSON file', () => {
  const json = join(root, 'bench.json');
  const r = cli(['bench', 'model', '--model', gguf, '--rounds', '1', '--prompt-tokens', '32', '--gen-tokens', '4', '--threads', '2', '--json', json]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  for (const name of ['prefill', 'decode'] as const) {
    const s = summaryLine(r.stdout, name);
    positive(s.ours, `${name} rocketkv tok/s`);
    positive(s.peer, `${name} llama.cpp tok/s`);
    positive(s.ratio, `${name} ratio`);
  }
  assert.match(r.stdout, /^prefill {4}32 tokens: /m);
  assert.match(r.stdout, /^decode {5}3 steps: /m);
  assert.match(r.stdout, /^cpu {8}\S/m);
  assert.match(r.stdout, /^threads {4}2 on both sides$/m);
  assert.match(r.stdout, /^peer {7}(node-llama-cpp|@fugood\/llama\.node) /m);
  assert.match(r.stdout, /^weights {4}rocketkv (f32|q8) in memory \(dequantized from the GGUF while loading\); file F32 /m);
  assert.match(r.stdout, /^round 1 \(rocketkv first\)$/m);

  const report = JSON.parse(readFileSync(json, 'utf8')) as ModelBenchReport;
  assert.equal(report.rounds.length, 1);
  assert.equal(report.rounds[0]!.ours.promptTokens, 32);
  assert.equal(report.rounds[0]!.peer?.promptTokens, 32, 'llama.cpp evaluated the same 32 prompt tokens');
  assert.equal(report.rounds[0]!.ours.decodeSteps, 3);
  positive(report.median.ratio?.prefill, 'JSON prefill ratio');
  positive(report.median.ratio?.decode, 'JSON decode ratio');
  assert.equal(report.threads, 2);
  assert.ok(report.peer?.binding, 'the peer binding is named');
});

test('bench model --peer none runs without llama.cpp', () => {
  const r = cli(['bench', 'model', '--model', gguf, '--rounds', '1', '--prompt-tokens', '32', '--gen-tokens', '4', '--peer', 'none']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /^llama\.cpp {2}skipped: --peer none$/m);
  for (const name of ['prefill', 'decode'] as const) {
    const s = summaryLine(r.stdout, name);
    positive(s.ours, `${name} rocketkv tok/s`);
    assert.equal(s.peer, undefined);
  }
  assert.doesNotMatch(r.stdout, /ratio \d/);
});

test('bench model at several lengths with a method beside: one report per length, the beside method decoded from the same prefill', () => {
  const json = join(dir, 'lengths.json');
  const r = cli(['bench', 'model', '--model', gguf, '--rounds', '1', '--prompt-tokens', '40,48', '--gen-tokens', '4', '--peer', 'none', '--beside', 'rocketkv@16', '--json', json]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const reports = JSON.parse(readFileSync(json, 'utf8')) as ModelBenchReport[];
  assert.deepEqual(reports.map((x) => x.promptTokens), [40, 48]);
  for (const rep of reports) {
    assert.equal(rep.ours.beside, 'rocketkv budget 16');
    assert.equal(rep.rounds[0]!.beside?.promptTokens, rep.promptTokens);
    assert.equal(rep.rounds[0]!.beside?.decodeSteps, 3);
    positive(rep.median.beside?.decodeTokensPerSecond, 'beside decode tok/s');
  }
  assert.match(r.stdout, /^ {6}48 tokens: prefill [\d.]+ tok\/s; decode full [\d.]+ tok\/s, step [\d.]+ ms; rocketkv budget 16 [\d.]+ tok\/s, step [\d.]+ ms = [\d.]+x our full step at 40$/m);
  const bad = cli(['bench', 'model', '--model', gguf, '--prompt-tokens', '40,x', '--peer', 'none']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--prompt-tokens must be one or more positive integers/);
  const badBeside = cli(['bench', 'model', '--model', gguf, '--prompt-tokens', '40', '--peer', 'none', '--beside', 'rocketkv']);
  assert.match(badBeside.stderr, /--beside must be METHOD@BUDGET/);
});

test('bench model on a model directory skips the peer and says why', () => {
  const r = cli(['bench', 'model', '--model', dir, '--rounds', '1', '--prompt-tokens', '32', '--gen-tokens', '4']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /^llama\.cpp {2}skipped: .* is not a GGUF file/m);
  positive(summaryLine(r.stdout, 'decode').ours, 'decode rocketkv tok/s');
});

test('bench decode --model takes real weights from a model directory', () => {
  const r = cli(['bench', 'decode', '--model', dir, '--context', '64', '--steps', '4']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.ok(r.stdout.startsWith(`model ${dir}: 2 layers, hidden 64, 4/2 heads`), r.stdout);
  assert.match(r.stdout, /^model weights ready in /m);
  const m = /^decode\s+([\d.]+) tokens\/s/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  positive(Number(m[1]), 'decode tokens/s');
});

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import { Engine, type Conversation, type Generation } from '../../src/engine/engine.ts';
import type { GenerateOptions, PromptInput } from '../../src/engine/engine.ts';
import { modelFingerprint, runEval, type EvalMode } from '../../src/eval/runner.ts';
import { promptRecords, type PromptRecord } from '../../src/eval/prompts.ts';
import { stringMatchAll } from '../../src/eval/metrics.ts';
import { openModelSource } from '../../src/model/source.ts';
import { smollm2Path } from '../helpers/smollm2.ts';

const entry = fileURLToPath(new URL('../helpers/rocketkv.ts', import.meta.url));
const script = fileURLToPath(new URL('../../tools/kvpress/run_presses.py', import.meta.url));
let root = '';
let model = '';
let engine: Engine;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'rkv-prompts-'));
  model = join(root, 'tiny');
  writeRandomCheckpoint(model, {
    architecture: 'llama', hiddenSize: 64, intermediateSize: 128, numLayers: 1, numHeads: 4, numKvHeads: 2,
    vocab: 'bytes', maxPositionEmbeddings: 2048, tieWordEmbeddings: true, dtype: 'F32', seed: 3,
  });
  engine = await Engine.load(model, { threads: 2, weights: 'f32' });
});

after(async () => {
  await engine.close();
  rmSync(root, { recursive: true, force: true });
});

/** The engine, with every prompt it is sent recorded as the ids it will run (its own encodePrompt). */
function recording(e: Engine): { engine: Engine; fed: { call: string; ids: number[] }[] } {
  const fed: { call: string; ids: number[] }[] = [];
  const rec = Object.create(e) as Engine;
  rec.generate = (input: PromptInput, opts?: GenerateOptions): Generation => {
    fed.push({ call: 'generate', ids: e.encodePrompt(input) });
    return e.generate(input, opts);
  };
  rec.conversation = (kv, plan): Conversation => {
    const c = e.conversation(kv, plan);
    return {
      send: (input: PromptInput, opts?: GenerateOptions): Generation => {
        fed.push({ call: 'send', ids: e.encodePrompt(input) });
        return c.send(input, opts);
      },
      close: () => c.close(),
    };
  };
  return { engine: rec, fed };
}

function cli(args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', entry, ...args], { encoding: 'utf8' });
  return { code: r.status ?? -1, stderr: r.stderr };
}

function readJsonl(file: string): PromptRecord[] {
  return readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as PromptRecord);
}

for (const mode of ['query-aware', 'query-agnostic'] as EvalMode[]) {
  test(`the JSONL holds the ids eval ruler feeds the engine (${mode})`, async () => {
    const out = join(root, `ruler-${mode}`);
    const plan = { tasks: ['niah_single_1', 'vt'] as const, lengths: [1024], samples: 2, seed: 7 };
    const { engine: rec, fed } = recording(engine);
    const results = await runEval(rec, { ...plan, tasks: [...plan.tasks], methods: ['full'], budgets: [], mode, outDir: out });
    const file = join(root, `prompts-${mode}.jsonl`);
    const r = cli(['eval', 'prompts', '--model', model, '--tasks', plan.tasks.join(','), '--lengths', '1024', '--samples', '2', '--seed', '7', '--out', file,
      ...(mode === 'query-agnostic' ? ['--query-agnostic'] : [])]);
    assert.equal(r.code, 0, r.stderr);
    const lines = readJsonl(file);
    assert.deepEqual(lines.map((l) => [l.task, l.index, l.mode]), [['niah_single_1', 0, mode], ['niah_single_1', 1, mode], ['vt', 0, mode], ['vt', 1, mode]]);
    // One generate per sample (query-aware), or the context then the question on one conversation.
    const expected = lines.flatMap((l) => (mode === 'query-aware' ? [{ call: 'generate', ids: l.input_ids }] : [{ call: 'send', ids: l.context_ids }, { call: 'send', ids: l.question_ids }]));
    assert.deepEqual(fed, expected);
    // The lines name the runs the runner wrote (model part of the directory, fingerprint, seed).
    for (const l of lines) {
      assert.equal(l.model, 'tiny');
      assert.equal(l.model_fingerprint, results[0]!.modelFingerprint);
      assert.equal(l.seed, 7);
      assert.equal(l.input, l.context + l.question + l.answer_prefix);
      assert.equal(l.max_new_tokens, l.task === 'vt' ? 30 : 128);
    }
    assert.deepEqual(readdirSync(out).filter((d) => d.includes('__')).sort(), ['niah_single_1__1024__tiny__full__full', 'vt__1024__tiny__full__full'].map((d) => (mode === 'query-aware' ? d : `${d}__${mode}`)));
    // predictions.csv: the prompt lengths and references of the same samples.
    const csv = readFileSync(join(out, readdirSync(out).find((d) => d.startsWith('vt__'))!, 'predictions.csv'), 'utf8').trim().split('\n').slice(1);
    const vt = lines.filter((l) => l.task === 'vt');
    csv.forEach((row, i) => {
      assert.ok(row.startsWith(`${i},${vt[i]!.input_ids.length},`), row);
      assert.ok(row.includes(vt[i]!.references.join(' | ')), row);
    });
  });
}

test('eval prompts is deterministic per seed, and another seed gives other samples', () => {
  const files = ['a', 'b', 'c'].map((n) => join(root, `det-${n}.jsonl`));
  for (const [i, f] of files.entries()) {
    const r = cli(['eval', 'prompts', '--model', model, '--tasks', 'niah_multikey_1,cwe', '--lengths', '1024', '--samples', '2', '--seed', i === 2 ? '1' : '0', '--out', f]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /wrote 4 samples to/);
  }
  assert.equal(readFileSync(files[0]!, 'utf8'), readFileSync(files[1]!, 'utf8'));
  assert.notEqual(readFileSync(files[0]!, 'utf8'), readFileSync(files[2]!, 'utf8'));
  assert.ok(!existsSync(`${files[0]}.part`));
});

test('the library call gives the same lines as the command', async () => {
  const source = await openModelSource(model);
  const tok = await source.loadTokenizer();
  const info = { path: model, name: 'tiny', fingerprint: await modelFingerprint(model) };
  const lines = [...promptRecords(tok, info, { tasks: ['niah_multikey_1', 'cwe'], lengths: [1024], samples: 2, seed: 0, mode: 'query-aware' })];
  const file = readJsonl(join(root, 'det-a.jsonl'));
  assert.deepEqual(lines.map((l) => ({ ...l, model_path: '' })), file.map((l) => ({ ...l, model_path: '' })));
});

test('bad input to eval prompts is refused before any work, one line', () => {
  const file = join(root, 'never.jsonl');
  const cases: [string[], RegExp][] = [
    [['--tasks', 'niah_single_9'], /unknown task 'niah_single_9'/],
    [['--lengths', '4096'], /length 4096 is larger than the model's context of 2048/],
    [['--lengths', '1024,,2048'], /--lengths must be a comma-separated list/],
    [['--samples', '0'], /samples must be an integer >= 1/],
  ];
  for (const [extra, pattern] of cases) {
    const r = cli(['eval', 'prompts', '--model', model, '--out', file, ...extra]);
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, pattern);
  }
  const r = cli(['eval', 'prompts', '--model', model]);
  assert.match(r.stderr, /give --out FILE.jsonl/);
  assert.ok(!existsSync(file));
});

test('on SmolLM2 the query-aware prompt splits before the answer prefix (kvpress compresses context + question)', { skip: smollm2Path() === null && 'SmolLM2 is not in the model cache: run `npm run fetch:smollm2`' }, async () => {
  const gguf = smollm2Path()!;
  const source = await openModelSource(gguf);
  const tok = await source.loadTokenizer();
  const info = { path: gguf, name: 'x', fingerprint: '' };
  for (const l of promptRecords(tok, info, { tasks: ['niah_single_1', 'niah_multikey_2', 'vt', 'cwe', 'fwe'], lengths: [1024], samples: 1, seed: 0, mode: 'query-aware' })) {
    assert.notEqual(l.question_end, null, l.task);
    assert.deepEqual(l.input_ids.slice(l.question_end!), l.answer_prefix_ids, l.task);
  }
});

const hasPython = spawnSync('python3', ['-c', 'import sys'], { stdio: 'ignore' }).status === 0;

test('run_presses.py scores with the same string_match_all as ours', { skip: !hasPython && 'python3 is not installed' }, () => {
  const cases: [string, string[]][] = [
    [' The special magic number for x is: 9821007.', ['9821007']],
    ['The numbers are 12 and 3.', ['12', '34', '3']],
    ['APPLE banana', ['apple', 'Banana', 'cherry', 'date']],
    ['', ['1']],
    ['anything', []],
    ['ΟΔΟΣ İstanbul STRASSE', ['οδος', 'i̇stanbul', 'strasse']],
  ];
  // The script's scorer alone: importing it must not need torch or kvpress.
  const code = `import json, sys, importlib.util
spec = importlib.util.spec_from_file_location('rp', ${JSON.stringify(script)})
rp = importlib.util.module_from_spec(spec); spec.loader.exec_module(rp)
print(json.dumps([rp.string_match_all(p, r) for p, r in json.load(sys.stdin)]))`;
  const r = spawnSync('python3', ['-c', code], { input: JSON.stringify(cases), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const py = JSON.parse(r.stdout) as number[];
  assert.deepEqual(py, cases.map(([p, refs]) => stringMatchAll(p, refs)));
  assert.deepEqual(py.slice(0, 3), [1, 2 / 3, 0.5]);
});

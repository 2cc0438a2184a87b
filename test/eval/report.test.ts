import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeResultsPage } from '../../src/eval/report.ts';
import type { RunMetrics } from '../../src/eval/runner.ts';

function run(method: string, budget: number | null, samples: number, score: number, stored: number): RunMetrics {
  return {
    task: 'niah_single_1', length: 4096, model: 'm', method, budget, mode: 'query-aware', depth: null, samples, seed: 0,
    score, storedKvBytes: stored, fullKvBytes: 4096, readBytesPerStep: stored / 2, tokensPerSecond: 1,
  };
}

test('results page: the full column of a method table is the full run on the same samples as the methods', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rkv-page-'));
  try {
    const file = join(dir, 'results.md');
    // A 30-sample full run beside the methods and a 100-sample one: the full-KV table takes the larger.
    await writeResultsPage(file, [run('full', null, 30, 30, 4096), run('full', null, 100, 40, 4096), run('rocketkv', 128, 30, 50, 1024)], 't', 'i');
    const page = readFileSync(file, 'utf8');
    const full = page.slice(page.indexOf('## Full KV cache'), page.indexOf('## 4096 tokens'));
    assert.match(full, /\| niah_single_1 \| 40\.0 \| 100 \|/);
    const cmp = page.slice(page.indexOf('## 4096 tokens, KV budget 128'), page.indexOf('## Every run'));
    assert.match(cmp, /\| niah_single_1 \| 30\.0 \| 50\.0 \|/);
    assert.match(cmp, /\| \*KV stored \(mean\)\* \| 4 KiB \| 1 KiB \|/);
    assert.match(cmp, /Samples per cell: 30; seed 0\./);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('results page: a method x budget table per task, and the first wrong answers of full-cache cells below 100', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rkv-page-'));
  try {
    const { mkdirSync, writeFileSync } = await import('node:fs');
    const { collectResults } = await import('../../src/eval/report.ts');
    const runs = [run('full', null, 2, 50, 4096), run('snapkv', 64, 2, 0, 512), run('snapkv', 256, 2, 50, 1024), run('knorm', 64, 2, 50, 512)];
    for (const [i, r] of runs.entries()) {
      const d = join(dir, 'runs', `r${i}`);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, 'metrics.json'), JSON.stringify({ ...r, peakKvDecodeBytes: r.storedKvBytes * 2 }));
      writeFileSync(join(d, 'samples.jsonl'), ['{}', JSON.stringify({ i: 0, score: 1, references: '123', prediction: 'it is 123' }), JSON.stringify({ i: 1, score: 0, references: '456', prediction: 'it is | 789' })].join('\n') + '\n');
    }
    const file = join(dir, 'page.md');
    await writeResultsPage(file, await collectResults([join(dir, 'runs')]), 't', 'i');
    const page = readFileSync(file, 'utf8');
    const grid = page.slice(page.indexOf('## niah_single_1 at 4096 tokens, query-aware: every method by KV budget'));
    assert.match(grid, /Full cache: full 50\.0 \(2 samples\)\./);
    assert.match(grid, /\| method \| 64 \| 256 \|\n\|---\|---\|---\|\n\| knorm \| 50\.0 \|  \|\n\| snapkv \| 0\.0 \| 50\.0 \|/);
    assert.match(grid, /\| snapkv \| 1 \/ 1 \| 1 \/ 2 \|/);
    const why = page.slice(page.indexOf('## Full KV cache: what the wrong answers say'));
    assert.match(why, /\| niah_single_1 \| 4096 \| 50\.0 \| 456 \| it is \\\| 789 \|/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

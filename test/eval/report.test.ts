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

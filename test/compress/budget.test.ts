import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rocketkvSplit } from '../../src/compress/budget.ts';

const base = { headDim: 128, maxNewTokens: 128, modelMaxLen: 131072 };

test('RocketKV split reproduces the check values of ALGORITHMS.md (S=16128, B=256)', () => {
  const s = rocketkvSplit({ ...base, promptLength: 16000, budget: 256 });
  assert.equal(s.S, 16128);
  assert.ok(Math.abs(s.c - 63.0) < 1e-9);
  assert.ok(Math.abs(s.alpha - 0.559) < 5e-4, `alpha ${s.alpha}`);
  assert.equal(s.cap, 1593);
  assert.equal(s.promptBudget, 1465);
  assert.equal(s.page, 3);
  assert.equal(s.r, 61);
  assert.equal(s.topk, 128);
});

test('RocketKV split reproduces the check values of ALGORITHMS.md (S=32128, B=1024)', () => {
  const s = rocketkvSplit({ ...base, promptLength: 32000, budget: 1024 });
  assert.equal(s.S, 32128);
  assert.equal(s.cap, 5769);
  assert.equal(s.promptBudget, 5641);
  assert.equal(s.page, 3);
  assert.equal(s.r, 68);
  assert.equal(s.topk, 512);
});

test('RocketKV split: S is capped by the model, a covering budget compresses nothing', () => {
  const capped = rocketkvSplit({ ...base, promptLength: 200000, budget: 512 });
  assert.equal(capped.S, 131072);
  const full = rocketkvSplit({ ...base, promptLength: 1000, budget: 4096 });
  assert.deepEqual([full.c, full.alpha, full.cap, full.promptBudget, full.c2, full.page, full.r, full.topk],
    [1, 0.2, 1128, 1000, 1, 1, 128, 2048]);
});

test('RocketKV split: the approximate pass and the exact pass each read about B/2 tokens', () => {
  for (const [L, B] of [[16000, 256], [32000, 1024], [8000, 512], [64000, 2048]] as const) {
    const s = rocketkvSplit({ ...base, promptLength: L, budget: B });
    assert.ok(s.page === 1 || s.page <= s.c2);
    assert.ok(s.r >= 1 && s.r <= 128);
    // (cap / page) pages of r floats, counted in full-KV tokens of 2d floats (K and V): about B/2.
    const approxTokens = (s.cap / s.page) * s.r / (2 * 128);
    assert.ok(approxTokens <= B / 2 && approxTokens > (B / 2) * 0.9, `L=${L} B=${B}: ${approxTokens}`);
    assert.equal(s.topk, B / 2);
    assert.equal(s.promptBudget, s.cap - 128);
  }
});

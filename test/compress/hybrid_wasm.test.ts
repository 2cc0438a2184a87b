import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Runtime } from '../../src/runtime/wasm.ts';
import { hybridPageScores } from '../../src/compress/hybrid.ts';
import { PageSummary } from '../../src/kv/summary.ts';
import { makeRng } from '../../src/engine/sampling.ts';

test('hybrid page scores: the wasm kernel equals the TypeScript path', async () => {
  const rt = await Runtime.create({ threads: 1 });
  try {
    const rng = makeRng(17);
    for (const [n, d, G, P, r] of [[97, 16, 3, 3, 5], [400, 64, 7, 4, 30], [33, 32, 1, 16, 32], [5, 8, 2, 3, 1]] as const) {
      const keys = Float32Array.from({ length: n * d }, () => rng() * 2 - 1);
      const summary = new PageSummary(P, d);
      summary.rebuild(keys, n);
      const q = Float32Array.from({ length: G * d }, () => rng() * 2 - 1);
      const pages = Math.ceil(n / P);
      const channels = Int32Array.from({ length: r }, (_, i) => (i * 7) % d).sort();
      const js = hybridPageScores(q, G, d, summary, pages, channels, n);
      const wasm = hybridPageScores(q, G, d, summary, pages, channels, n, rt);
      let worst = 0;
      for (let p = 0; p < pages; p++) worst = Math.max(worst, Math.abs(js[p]! - wasm[p]!));
      assert.ok(worst < 1e-12, `n=${n} d=${d} G=${G}: ${worst}`);
      // A distribution over tokens per query head: each page's value counts once per token it holds.
      let sum = 0;
      wasm.forEach((v, p) => { sum += v * Math.min(P, n - p * P); });
      assert.ok(Math.abs(sum - G) < 1e-9, 'each query head contributes a distribution over tokens');
    }
  } finally {
    await rt.close();
  }
});

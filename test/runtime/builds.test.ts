/**
 * The two builds of the kernels (plain SIMD, relaxed SIMD) give the same tokens: on the bundled
 * model and on SmolLM2, greedy generation with the full cache and with compression methods at
 * budgets where they evict, run once on each build. Their floats differ by rounding only (the
 * relaxed build fuses multiply-adds), which the logit comparison bounds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../../src/engine/engine.ts';
import { Runtime } from '../../src/runtime/wasm.ts';
import { bundledModelDir } from '../../src/cli/default-model.ts';
import type { CompressionRequest } from '../../src/compress/registry.ts';
import { benchPrompt } from '../../src/bench/model.ts';
import { smollm2Path, SMOLLM2_SKIP } from '../helpers/smollm2.ts';

const relaxedOk = await Runtime.create({ threads: 1, kernels: 'auto' }).then(async (rt) => {
  const b = rt.kernelBuild;
  await rt.close();
  return b === 'relaxed';
});
const RELAXED_SKIP = relaxedOk ? false : `this engine (Node ${process.versions.node}) does not compile the relaxed-SIMD build`;

test('kernels: auto picks relaxed where it compiles, plain and relaxed can be asked for, anything else is refused', { skip: RELAXED_SKIP }, async () => {
  for (const [choice, want] of [['auto', 'relaxed'], ['plain', 'plain'], ['relaxed', 'relaxed']] as const) {
    const rt = await Runtime.create({ threads: 2, kernels: choice });
    assert.equal(rt.kernelBuild, want, choice);
    await rt.close();
  }
  await assert.rejects(Runtime.create({ threads: 1, kernels: 'fast' as 'auto' }), /kernels must be one of auto, plain, relaxed/);
});

interface Case { kv: CompressionRequest; label: string }

/** Prompts of the seeded essay in the model's tokenizer, one of each length (bench model's prompt). */
interface PromptSpec { lengths: number[] }

async function generateOn(model: string, kernels: 'plain' | 'relaxed', spec: PromptSpec, cases: Case[], maxTokens: number): Promise<{ prompts: number[][]; tokens: number[][]; logits: Float32Array[] }> {
  const engine = await Engine.load(model, { threads: 2, kernels });
  try {
    assert.equal(engine.runtime.kernelBuild, kernels);
    const prompts = spec.lengths.map((n) => benchPrompt(engine.tokenizer, n));
    prompts.forEach((p, i) => assert.equal(p.length, spec.lengths[i], 'each prompt is long enough for the budgets to evict'));
    const tokens: number[][] = [];
    const logits: Float32Array[] = [];
    for (const p of prompts) {
      const pre = await engine.prefill({ tokens: p });
      logits.push(pre.logits.slice());
      pre.release();
      for (const c of cases) {
        const gen = engine.generate({ tokens: p }, { maxTokens, temperature: 0, ignoreEos: true, kv: c.kv });
        for await (const _ of gen) { /* collect */ }
        tokens.push(gen.tokens);
      }
    }
    return { prompts, tokens, logits };
  } finally {
    await engine.close();
  }
}

/** Runs every case on both builds and checks they agree: the same tokens, prefill logits within tol (relative). */
async function buildsAgree(t: { diagnostic(s: string): void }, model: string, spec: PromptSpec, cases: Case[], maxTokens: number, tol: number): Promise<void> {
  const plain = await generateOn(model, 'plain', spec, cases, maxTokens);
  const relaxed = await generateOn(model, 'relaxed', spec, cases, maxTokens);
  assert.deepEqual(relaxed.prompts, plain.prompts);
  const prompts = plain.prompts;
  let worst = 0;
  prompts.forEach((_, i) => {
    const a = plain.logits[i]!, b = relaxed.logits[i]!;
    let d = 0, scale = 0;
    for (let j = 0; j < a.length; j++) { d = Math.max(d, Math.abs(a[j]! - b[j]!)); scale = Math.max(scale, Math.abs(a[j]!)); }
    worst = Math.max(worst, d / scale);
  });
  t.diagnostic(`largest prefill logit difference between the builds, relative to the largest logit: ${worst.toExponential(2)}`);
  assert.ok(worst < tol, `logits differ by ${worst} (relative)`);
  let k = 0;
  for (let i = 0; i < prompts.length; i++) {
    for (const c of cases) {
      assert.deepEqual(relaxed.tokens[k], plain.tokens[k], `prompt ${i}, ${c.label}: relaxed and plain builds generate the same tokens`);
      k++;
    }
  }
  t.diagnostic(`${k} generations (${prompts.length} prompts x ${cases.length} KV settings) give the same tokens on both builds`);
}

test('bundled model: the plain and relaxed builds generate the same tokens, full cache and compressed', { skip: RELAXED_SKIP }, async (t) => {
  await buildsAgree(t, bundledModelDir(), { lengths: [300, 257] }, [
    { kv: { method: 'full' }, label: 'full' },
    { kv: { method: 'rocketkv', budget: 64 }, label: 'rocketkv@64' },
    { kv: { method: 'kvcompress', budget: 32 }, label: 'kvcompress@32' },
    { kv: { method: 'snapkv', budget: 64 }, label: 'snapkv@64' },
    { kv: { method: 'quest', budget: 64 }, label: 'quest@64' },
  ], 24, 1e-4);
});

const smol = smollm2Path();
test('SmolLM2: the plain and relaxed builds generate the same tokens, full cache and compressed', { skip: RELAXED_SKIP || (smol ? false : SMOLLM2_SKIP) }, async (t) => {
  await buildsAgree(t, smol!, { lengths: [600, 523] }, [
    { kv: { method: 'full' }, label: 'full' },
    { kv: { method: 'rocketkv', budget: 128 }, label: 'rocketkv@128' },
    { kv: { method: 'kvcompress', budget: 64 }, label: 'kvcompress@64' },
  ], 16, 1e-4);
});

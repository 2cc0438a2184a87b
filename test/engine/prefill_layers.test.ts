// Layer-by-layer prefill: a request alone whose method evicts each layer on its own runs its prompt
// layer after layer, evicting each layer when done. Its tokens and kept KV equal the chunked
// prefill's, bit for bit, while its peak KV is a fraction of the full cache's (RocketKV: -31%).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, type GenerateOptions, type GenerateStats } from '../../src/engine/engine.ts';
import { bundledModelDir } from '../../src/cli/default-model.ts';
import { writeRandomCheckpoint } from '../../src/model/random.ts';
import type { CompressionRequest } from '../../src/compress/registry.ts';
import { keyValuePrompt } from '../helpers/prompts.ts';
import { makeRng } from '../../src/engine/sampling.ts';

let engine: Engine;
before(async () => { engine = await Engine.load(bundledModelDir(), { threads: 2 }); });
after(async () => { await engine.close(); });


async function run(e: Engine, tokens: number[], opts: GenerateOptions): Promise<{ tokens: number[]; stats: GenerateStats }> {
  const g = e.generate({ tokens }, opts);
  for await (const _ of g) { /* drain */ }
  return { tokens: g.tokens, stats: g.stats! };
}

const LAYERWISE: CompressionRequest[] = [
  { method: 'rocketkv', budget: 128 },
  { method: 'snapkv', budget: 96 },
  { method: 'snapkv', budget: 96, gqa: 'group' },
  { method: 'snapkv++', budget: 200 },
  { method: 'adakv', budget: 80 },
  { method: 'streaming_llm', budget: 64 },
  { method: 'knorm', budget: 100 },
  { method: 'tova', budget: 100 },
];

test('layer by layer equals chunked prefill for every layerwise method, with a lower peak', async () => {
  const prompt = keyValuePrompt(engine.tokenizer, 1300, 5);
  for (const kv of LAYERWISE) {
    const opts: GenerateOptions = { maxTokens: 24, ignoreEos: true, kv, prefillChunkTokens: 256 };
    const byLayer = await run(engine, prompt, opts);
    const chunked = await run(engine, prompt, { ...opts, prefillOrder: 'chunk' });
    const name = JSON.stringify(kv);
    assert.equal(byLayer.stats.prefillOrder, 'layer', `${name}: ran layer by layer`);
    assert.equal(chunked.stats.prefillOrder, 'chunk');
    assert.deepEqual(byLayer.tokens, chunked.tokens, `${name}: same tokens`);
    assert.deepEqual(byLayer.stats.kv.kvsPerHead, chunked.stats.kv.kvsPerHead, `${name}: same KVs kept`);
    assert.equal(byLayer.stats.kvBytes, chunked.stats.kvBytes);
    assert.equal(byLayer.stats.kvPeakDecodeBytes, chunked.stats.kvPeakDecodeBytes, `${name}: same decode-phase peak`);
    assert.ok(byLayer.stats.kvPeakBytes < chunked.stats.kvPeakBytes, `${name}: request peak ${byLayer.stats.kvPeakBytes} < ${chunked.stats.kvPeakBytes}`);
  }
  // Methods that rank across layers, and full, stay chunked.
  for (const kv of [{ method: 'kvcompress', budget: 64 }, { method: 'pyramidkv', budget: 96 }, { method: 'full' }] as CompressionRequest[]) {
    assert.equal((await run(engine, prompt, { maxTokens: 2, kv })).stats.prefillOrder, 'chunk', kv.method);
  }
});

test('a 16K-token request with rocketkv@256 peaks at most 70% of the full cache over the request and 15% while decoding', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rkv-16k-'));
  try {
    writeRandomCheckpoint(dir, {
      architecture: 'llama', hiddenSize: 64, intermediateSize: 128, numLayers: 6, numHeads: 4, numKvHeads: 2,
      vocab: 'bytes', maxPositionEmbeddings: 32768, tieWordEmbeddings: true, dtype: 'F32', seed: 16,
    });
    const e = await Engine.load(dir, { threads: 2 });
    try {
      const r = makeRng(9);
      const prompt = Array.from({ length: 16384 }, () => Math.floor(r() * 256));
      const full = await run(e, prompt, { maxTokens: 32, ignoreEos: true });
      const rocket = await run(e, prompt, { maxTokens: 32, ignoreEos: true, kv: { method: 'rocketkv', budget: 256 } });
      const request = rocket.stats.kvPeakBytes / full.stats.kvPeakBytes;
      const decode = rocket.stats.kvPeakDecodeBytes / full.stats.kvPeakDecodeBytes;
      console.log(`# 16K prompt: full peak ${full.stats.kvPeakBytes} B; rocketkv@256 request peak ${rocket.stats.kvPeakBytes} B (${(100 * request).toFixed(1)}%), decode peak ${rocket.stats.kvPeakDecodeBytes} B (${(100 * decode).toFixed(1)}%), ${rocket.stats.prefillOrder}`);
      assert.equal(rocket.stats.prefillOrder, 'layer');
      assert.ok(request <= 0.7, `whole-request peak ${(100 * request).toFixed(1)}% of full's`);
      assert.ok(decode <= 0.15, `decode-phase peak ${(100 * decode).toFixed(1)}% of full's`);
    } finally {
      await e.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

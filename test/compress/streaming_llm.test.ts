import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamingLLM, streamingLlmEntry } from '../../src/compress/streaming_llm.ts';
import type { LayerView, ModelShape } from '../../src/compress/press.ts';
import { densePlanContext } from './helpers.ts';

const shape: ModelShape = { numLayers: 3, numHeads: 6, numKvHeads: 2, headDim: 8 };

/** Brute force: the first `sinks` slots and the last B - sinks (everything if B >= L). */
function reference(L: number, B: number, sinks: number): number[] {
  const out: number[] = [];
  for (let j = 0; j < L; j++) if (B >= L || j < Math.min(sinks, B) || j >= L - Math.max(0, B - sinks)) out.push(j);
  return out;
}

/** A view with no queries: streaming_llm must not ask for any. */
function view(layer: number, L: number): LayerView {
  const positions = Int32Array.from({ length: L }, (_, i) => i);
  return {
    layer, shape, heads: shape.numKvHeads, group: 3, promptLength: L,
    length: () => L,
    positions: () => positions,
    keys: () => { throw new Error('streaming_llm read keys'); },
    windowQueries: new Float32Array(0),
    windowRows: 0,
    windowProbs: () => { throw new Error('streaming_llm asked for window probabilities'); },
  };
}

test('streaming_llm keeps sinks + the most recent tokens, per KV head, for budgets below/at/above L', () => {
  for (const L of [1, 17, 50, 129]) {
    for (const sinks of [0, 4, 7]) {
      for (const B of [1, 3, 5, 16, L - 1, L, L + 4].filter((b) => b > 0)) {
        const ev = streamingLlmEntry.create({ budget: B, promptLength: L, maxNewTokens: 8, shape, maxPositionEmbeddings: 4096, blockSlots: 16 }, { sinks }).eviction!;
        assert.ok(ev instanceof StreamingLLM);
        const scores = Array.from({ length: shape.numLayers }, (_, l) => ev.score(view(l, L)));
        const kept = ev.plan(scores, densePlanContext(shape, scores.map((s) => s.map(() => L)), B));
        const want = reference(L, B, sinks);
        for (const layer of kept) for (const head of layer) assert.deepEqual(Array.from(head), want, `L ${L} B ${B} sinks ${sinks}`);
      }
    }
  }
});

test('streaming_llm entry: no window, no expansion, default 4 sinks, evicts only past the budget', () => {
  const ev = streamingLlmEntry.create({ budget: 64, promptLength: 100, maxNewTokens: 8, shape, maxPositionEmbeddings: 4096, blockSlots: 16 }, { sinks: 4 }).eviction!;
  assert.equal(ev.windowSize, 0);
  assert.equal(ev.expandGqa, false);
  assert.equal(ev.minLengthToEvict, 64);
  assert.equal(streamingLlmEntry.options['sinks']!.default, 4);
});

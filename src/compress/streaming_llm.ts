/**
 * streaming_llm: keep the first `sinks` slots (attention sinks) and the most recent B - sinks.
 *
 *   score(slot) = +inf for the first `sinks` slots, else the slot's position (newer = higher)
 *   keep per head: top-B of the scores
 *
 * Source: StreamingLLM (arXiv 2309.17453); kvpress's StreamingLLMPress (n_sink = 4).
 * Budget B (--kv-budget) = tokens kept per KV head, sinks included; B >= L keeps all.
 * Defaults: sinks 4. Needs no queries (window 0) and no GQA expansion.
 * Applied once at the end of prefill, like the other prefill methods here; decode tokens are
 * appended and not evicted (the paper's rolling cache during generation is not reproduced).
 * Deviation: with B < sinks only the first B sinks are kept.
 */
import type { MethodEntry } from './method.ts';
import type { LayerView } from './press.ts';
import { TopKScorer } from './scorer.ts';

export class StreamingLLM extends TopKScorer {
  readonly name = 'streaming_llm';
  private readonly sinks: number;

  constructor(budget: number, sinks: number) {
    super(budget, 0);
    this.sinks = sinks;
  }

  score(view: LayerView): Float32Array[] {
    const out: Float32Array[] = [];
    for (let h = 0; h < view.heads; h++) {
      const n = view.length(h);
      const pos = view.positions(h);
      const s = new Float32Array(n);
      for (let j = 0; j < n; j++) s[j] = j < this.sinks ? Infinity : pos[j]!;
      out.push(s);
    }
    return out;
  }

}

export const streamingLlmEntry: MethodEntry = {
  name: 'streaming_llm',
  summary: 'StreamingLLM: keep the first sink tokens and the most recent ones',
  options: {
    sinks: { type: 'int', default: 4, min: 0, help: 'first tokens always kept (attention sinks)' },
  },
  create: (ctx, opts) => ({ eviction: new StreamingLLM(ctx.budget, opts['sinks'] as number) }),
};

/**
 * The plumbing of eviction methods whose rule is a score per slot and a top-B per stored head:
 * a method is its `score` (the rule); keeping the B best of every head, once at the end of prefill,
 * lives here. Ties go to the lower slot (press.ts topK). The SnapKV family (snapkv, snapkv++,
 * adakv, pyramidkv), streaming_llm, knorm, tova and expected_attention build on it; a method whose
 * plan is not a plain top-B (adakv, pyramidkv, expected_attention) overrides `plan`.
 */
import { topK } from './press.ts';
import type { EvictionMethod, LayerView, PlanContext } from './press.ts';

export abstract class TopKScorer implements EvictionMethod {
  abstract readonly name: string;
  /** Prompts within the budget keep everything: no scoring, and no GQA expansion either. */
  readonly minLengthToEvict: number;
  /** Top-B per head of each layer (a subclass whose plan looks across layers says otherwise). */
  readonly layerwise: boolean = true;

  constructor(protected readonly budget: number, readonly windowSize: number, readonly expandGqa = false) {
    this.minLengthToEvict = budget;
  }

  keptPerHead(): number {
    return this.budget;
  }

  /** Per stored head of the layer: one score per slot (higher = keep). */
  abstract score(view: LayerView): Float32Array[];

  plan(scores: Float32Array[][], _ctx: PlanContext): Int32Array[][] {
    return scores.map((layer) => layer.map((s) => topK(s, this.budget)));
  }
}

/**
 * exact_topk (oracle, decode-time selector): exact attention probabilities over every slot, and
 * each query head reads its own top B,
 *
 *   p_g = softmax(q_g . K^T / sqrt(d))   per query head g of the group
 *   query head g reads the top-B slots of p_g
 *
 * as RocketKV's `topk` oracle does (one set per query head, not one per KV head). It reads all of K
 * to choose, so it measures the accuracy ceiling of reading B tokens per query head, never a
 * speed-up. Reads the whole head (null) when B >= length.
 * Cost recorded per call: length * d floats of K (the scoring pass); attention then reads the union
 * of the group's sets.
 */
import type { MethodEntry } from './method.ts';
import type { DecodeSelector, Selection, SelectView } from './press.ts';
import { softmaxInPlace, topKSelect } from './util.ts';

/** Exact attention probabilities over all n slots, one row per query head of the group. */
export function exactProbs(q: Float32Array, group: number, d: number, keys: Float32Array, n: number): Float64Array[] {
  const scale = 1 / Math.sqrt(d);
  const out: Float64Array[] = [];
  for (let g = 0; g < group; g++) {
    const s = new Float64Array(n);
    const qo = g * d;
    for (let t = 0; t < n; t++) {
      const ko = t * d;
      let dot = 0;
      for (let i = 0; i < d; i++) dot += q[qo + i]! * keys[ko + i]!;
      s[t] = dot * scale;
    }
    softmaxInPlace(s, 0, n);
    out.push(s);
  }
  return out;
}

export class ExactTopkSelector implements DecodeSelector {
  readonly name = 'exact_topk';
  readonly summaryPage = 0;
  readonly budget: number;

  constructor(opts: { budget: number }) {
    this.budget = opts.budget;
  }

  select(view: SelectView): Selection {
    const n = view.length;
    if (this.budget >= n) return null;
    const probs = exactProbs(view.q, view.group, view.headDim, view.keys(), n);
    view.countRead(n * view.headDim * 4, 0);
    const sets = probs.map((p) => topKSelect(p, this.budget));
    return sets.length === 1 ? sets[0]! : sets;
  }
}

export const exactTopkEntry: MethodEntry = {
  name: 'exact_topk',
  summary: 'oracle: exact attention over all keys, each query head reads its own top B tokens (accuracy ceiling, no speed-up)',
  options: {},
  create: (ctx) => ({ selector: new ExactTopkSelector({ budget: ctx.budget }) }),
};

/**
 * exact_topk (oracle, decode-time selector): exact attention probabilities over every slot,
 *
 *   p_g = softmax(q_g . K^T / sqrt(d))   per query head of the group
 *   read the top-B slots of sum_g p_g    one set per KV head (the group shares its slots)
 *
 * It reads all of K to choose, so it measures the accuracy ceiling of reading B tokens per head,
 * never a speed-up. GQA: probabilities SUMMED over the group (the group's total attention mass
 * that the set keeps). Reads the whole head (null) when B >= length.
 * Cost recorded per call: length * d floats of K.
 */
import type { MethodEntry } from './method.ts';
import type { DecodeSelector, SelectView } from './press.ts';
import { softmaxInPlace, topKSelect } from './util.ts';

/** Sum over the group of the exact attention probabilities over all n slots. */
export function exactGroupProbs(q: Float32Array, group: number, d: number, keys: Float32Array, n: number): Float64Array {
  const total = new Float64Array(n);
  const s = new Float64Array(n);
  const scale = 1 / Math.sqrt(d);
  for (let g = 0; g < group; g++) {
    const qo = g * d;
    for (let t = 0; t < n; t++) {
      const ko = t * d;
      let dot = 0;
      for (let i = 0; i < d; i++) dot += q[qo + i]! * keys[ko + i]!;
      s[t] = dot * scale;
    }
    softmaxInPlace(s, 0, n);
    for (let t = 0; t < n; t++) total[t] += s[t]!;
  }
  return total;
}

export class ExactTopkSelector implements DecodeSelector {
  readonly name = 'exact_topk';
  readonly summaryPage = 0;
  readonly budget: number;

  constructor(opts: { budget: number }) {
    this.budget = opts.budget;
  }

  select(view: SelectView): Int32Array | null {
    const n = view.length;
    if (this.budget >= n) return null;
    const scores = exactGroupProbs(view.q, view.group, view.headDim, view.keys(), n);
    view.countRead(n * view.headDim * 4, 0);
    return topKSelect(scores, this.budget);
  }
}

export const exactTopkEntry: MethodEntry = {
  name: 'exact_topk',
  summary: 'oracle: exact attention over all keys, read the top B tokens per KV head (accuracy ceiling, no speed-up)',
  options: {},
  create: (ctx) => ({ selector: new ExactTopkSelector({ budget: ctx.budget }) }),
};

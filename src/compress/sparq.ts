/**
 * sparq (decode-time selector): approximate the attention from the r channels where |q| is largest,
 * then read the top-k tokens exactly:
 *
 *   ch     = top-r channels of sum_g |q_g|                      shared by the group
 *   s_g[t] = sum_{i in ch} q_g[i] * K[t][i]
 *   p_g    = softmax(s_g / sqrt(d * sum_{ch} |q_g| / sum |q_g|))  per query head
 *   read the top-k slots of sum_g p_g,  k = floor(B / 2)
 *
 * Source: SparQ Attention (Ribar et al., ICML 2024, arXiv 2312.04985), as the RocketKV paper
 * configures it. r is chosen so the approximate pass reads as many floats as k full keys:
 * r = floor(d * k / length), clamped to [1, d] (option `r` > 0 fixes it instead).
 * GQA: channels shared by the group (sum of |q|), probabilities summed over the group.
 * Deviations: no mean-value reweighting of the skipped tokens (reads are exact attention over the
 * selected slots, like the other selectors); k is at least 1; the head is read whole (null) when
 * B >= length, since a full read then fits the per-step budget of B tokens.
 * Cost recorded per call: length * r floats of K.
 */
import type { MethodEntry } from './method.ts';
import type { DecodeSelector, SelectView } from './press.ts';
import { groupAbsSum, softmaxInPlace, topKSelect } from './util.ts';

/** Sum over the group of the SparQ approximate attention probabilities over all slots. */
export function sparqScores(q: Float32Array, group: number, d: number, keys: Float32Array, n: number, channels: Int32Array): Float64Array {
  const total = new Float64Array(n);
  const s = new Float64Array(n);
  for (let g = 0; g < group; g++) {
    const qo = g * d;
    let absAll = 0;
    for (let i = 0; i < d; i++) absAll += Math.abs(q[qo + i]!);
    let absCh = 0;
    for (const c of channels) absCh += Math.abs(q[qo + c]!);
    for (let t = 0; t < n; t++) {
      const ko = t * d;
      let dot = 0;
      for (const c of channels) dot += q[qo + c]! * keys[ko + c]!;
      s[t] = dot;
    }
    // A zero query has no direction: its scores are all 0, any finite temperature gives uniform.
    const temperature = absAll > 0 && absCh > 0 ? Math.sqrt((d * absCh) / absAll) : 1;
    softmaxInPlace(s, 0, n, temperature);
    for (let t = 0; t < n; t++) total[t] += s[t]!;
  }
  return total;
}

export interface SparqOptions {
  /** B: tokens of traffic per head per step. */
  budget: number;
  /** Channels of the approximate pass; 0 = floor(d * k / length) each step. */
  r: number;
}

export class SparqSelector implements DecodeSelector {
  readonly name = 'sparq';
  readonly summaryPage = 0;
  readonly budget: number;
  readonly r: number;

  constructor(opts: SparqOptions) {
    this.budget = opts.budget;
    this.r = opts.r;
  }

  select(view: SelectView): Int32Array | null {
    const n = view.length;
    const d = view.headDim;
    const k = Math.max(1, Math.floor(this.budget / 2));
    if (this.budget >= n || k >= n) return null;
    const r = this.r > 0 ? Math.min(d, this.r) : Math.min(d, Math.max(1, Math.floor((d * k) / n)));
    const channels = topKSelect(groupAbsSum(view.q, view.group, d), r);
    const scores = sparqScores(view.q, view.group, d, view.keys(), n, channels);
    view.countRead(n * r * 4, 0);
    return topKSelect(scores, k);
  }
}

export const sparqEntry: MethodEntry = {
  name: 'sparq',
  summary: 'SparQ: approximate attention from the top-r |q| channels, read the top B/2 tokens exactly',
  options: {
    r: { type: 'int', default: 0, min: 0, help: 'channels of the approximate pass; 0 = floor(d * (B/2) / length), so it reads about B/2 tokens' },
  },
  create: (ctx, opts) => ({ selector: new SparqSelector({ budget: ctx.budget, r: opts.r as number }) }),
};

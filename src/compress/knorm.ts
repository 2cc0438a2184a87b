/**
 * knorm: keep the keys of smallest L2 norm (low-norm keys draw high attention).
 *
 *   score(slot) = -||k_slot||_2        post-RoPE key of the stored head
 *   keep per head: top-B of the scores (ties: lower slot first)
 *
 * Source: "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression" (arXiv
 * 2406.11430); kvpress's KnormPress (its whole rule is that expression).
 * Budget B (--kv-budget) = tokens kept per KV head; B >= L keeps all. Needs no queries (window 0)
 * and no GQA expansion. Applied once at the end of prefill; decode tokens are appended.
 * Deviation from kvpress: the budget is a token count per head rather than a compression ratio
 * (kvpress keeps int(L * (1 - ratio)) per head, the same rule at B = that count).
 */
import type { MethodEntry } from './method.ts';
import type { LayerView } from './press.ts';
import { TopKScorer } from './scorer.ts';

export class KNorm extends TopKScorer {
  readonly name = 'knorm';

  constructor(budget: number) {
    super(budget, 0);
  }

  score(view: LayerView): Float32Array[] {
    const d = view.shape.headDim;
    const out: Float32Array[] = [];
    for (let h = 0; h < view.heads; h++) {
      const n = view.length(h);
      const k = view.keys(h);
      const s = new Float32Array(n);
      for (let j = 0; j < n; j++) {
        let sq = 0;
        for (let i = 0; i < d; i++) sq += k[j * d + i]! * k[j * d + i]!;
        s[j] = -Math.sqrt(sq);
      }
      out.push(s);
    }
    return out;
  }

}

export const knormEntry: MethodEntry = {
  name: 'knorm',
  summary: 'KNorm: keep the keys of smallest L2 norm',
  options: {},
  create: (ctx) => ({ eviction: new KNorm(ctx.budget) }),
};

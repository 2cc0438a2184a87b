/**
 * tova: keep what the last prompt token attends to, one set for the whole layer.
 *
 *   A   = softmax(q_last . K^T / sqrt(d))       per query head, over all L keys
 *   s   = mean over ALL query heads of the layer of A[:, :L-1]   one row shared by every KV head
 *   s[L-1] = max(s) + 1                          the last token is always kept
 *   keep per KV head: top-B of s (the same positions in every head of the layer)
 *
 * Source: TOVA (arXiv 2401.06104); kvpress's TOVAPress (window 1, mean over heads, last token
 * forced), which this follows.
 * Budget B (--kv-budget) = tokens kept per KV head; B >= L keeps all. Window 1, no GQA expansion.
 * Applied once at the end of prefill (TOVA's own cache also evicts one token per decode step;
 * kvpress's prefill press, followed here, does not).
 */
import type { MethodEntry } from './method.ts';
import type { LayerView } from './press.ts';
import { TopKScorer } from './scorer.ts';

export class Tova extends TopKScorer {
  readonly name = 'tova';

  constructor(budget: number) {
    super(budget, 1);
  }

  score(view: LayerView): Float32Array[] {
    const n = view.length(0);
    const mean = new Float64Array(n);
    const heads = view.heads * view.group;
    for (let h = 0; h < view.heads; h++) {
      if (view.length(h) !== n) throw new Error('tova scores a layer whose heads hold the same slots');
      const p = view.windowProbs(h, 1); // [group, 1, n]
      for (let g = 0; g < view.group; g++) for (let j = 0; j < n - 1; j++) mean[j]! += p[g * n + j]! / heads;
    }
    let max = -Infinity;
    for (let j = 0; j < n - 1; j++) max = Math.max(max, mean[j]!);
    const s = Float32Array.from(mean);
    s[n - 1] = (n > 1 ? max : 0) + 1;
    return Array.from({ length: view.heads }, () => s);
  }

}

export const tovaEntry: MethodEntry = {
  name: 'tova',
  summary: 'TOVA: keep what the last prompt token attends to (mean over all heads of the layer)',
  options: {},
  create: (ctx) => ({ eviction: new Tova(ctx.budget) }),
};

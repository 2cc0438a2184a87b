/**
 * quest (decode-time selector): pages of P slots keep the element-wise min and max of K; at each
 * step the page's upper bound on q.k is
 *
 *   U[page] = sum_i max(q_i * min[page][i], q_i * max[page][i])
 *
 * and attention reads the top ceil(B/P) pages exactly (B = --kv-budget, tokens per head).
 *
 * Source: Quest (Tang et al., ICML 2024, arXiv 2406.10774). Default page P = 16.
 * GQA: the KV head reads one set for its whole group, so a page's score is the MAX of its bound
 * over the group's query heads (an upper bound on any of the group's logits in that page; the paper
 * is per query head on MHA models). The partial last page counts as a page. Reading covers the
 * whole head (null) when B >= length or ceil(B/P) >= the number of pages.
 * Cost recorded per call: the summaries, pages * 2 * d floats.
 */
import type { MethodEntry } from './method.ts';
import type { DecodeSelector, SelectView } from './press.ts';
import { PageSummary } from '../kv/summary.ts';
import { pageSlots, topKSelect } from './util.ts';

/** Per page, the largest over the group's query heads of sum_i max(q_i min_i, q_i max_i). */
export function questPageBounds(q: Float32Array, group: number, d: number, summary: PageSummary, pages: number): Float64Array {
  const bound = new Float64Array(pages).fill(-Infinity);
  const { min, max } = summary;
  for (let g = 0; g < group; g++) {
    const qo = g * d;
    for (let p = 0; p < pages; p++) {
      const so = p * d;
      let u = 0;
      for (let i = 0; i < d; i++) {
        const qi = q[qo + i]!;
        const a = qi * min[so + i]!;
        const b = qi * max[so + i]!;
        u += a > b ? a : b;
      }
      if (u > bound[p]!) bound[p] = u;
    }
  }
  return bound;
}

export interface QuestOptions {
  /** Tokens read per head per step. */
  budget: number;
  /** Slots per page (P). */
  page: number;
}

export class QuestSelector implements DecodeSelector {
  readonly name = 'quest';
  readonly summaryPage: number;
  readonly budget: number;

  constructor(opts: QuestOptions) {
    this.budget = opts.budget;
    this.summaryPage = opts.page;
  }

  select(view: SelectView): Int32Array | null {
    const n = view.length;
    const P = this.summaryPage;
    const d = view.headDim;
    const pages = Math.ceil(n / P);
    const want = Math.ceil(this.budget / P);
    if (this.budget >= n || want >= pages) return null;
    let summary = view.summary;
    if (!summary || summary.page !== P || summary.pages < pages) {
      // The session keeps summaries when summaryPage is declared; rebuilding is only a safety net and reads K.
      summary = new PageSummary(P, d);
      summary.rebuild(view.keys(), n);
      view.countRead(n * d * 4, 0);
    }
    const bound = questPageBounds(view.q, view.group, d, summary, pages);
    view.countRead(0, pages * 2 * d * 4);
    return pageSlots(topKSelect(bound, want), P, n);
  }
}

export const questEntry: MethodEntry = {
  name: 'quest',
  summary: 'Quest: per step, read the top ceil(B/page) pages by their min/max upper bound on q.k',
  options: {
    page: { type: 'int', default: 16, min: 1, help: 'slots per page (summary granularity)' },
  },
  create: (ctx, opts) => ({ selector: new QuestSelector({ budget: ctx.budget, page: opts.page as number }) }),
};

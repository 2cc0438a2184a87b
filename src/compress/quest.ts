/**
 * quest (decode-time selector): pages of P slots keep the element-wise min and max of K; at each
 * step the page's upper bound on q.k is
 *
 *   U[page] = sum_i max(q_i * min[page][i], q_i * max[page][i])
 *
 * and attention reads the top max(min_pages, floor(B/P)) pages exactly (B = --kv-budget, tokens
 * per head), as the authors' evaluation code (mit-han-lab/Quest, evaluation/quest_attention.py)
 * does: `min(max(3, token_budget // chunk_size), chunks)` pages, chosen PER QUERY HEAD (its keys
 * are repeat_kv'd to the query heads), and the first two layers attend densely (`layer_id < 2`).
 *
 * Defaults: page 16, min_pages 3, dense_layers 2, gqa 'head' (one page set per query head of the
 * group). gqa 'group' is one set per KV head whose page score is the MAX of the bound over the
 * group (an upper bound on any of the group's logits in that page). The partial last page counts as
 * a page. Reading covers the whole head (null) when the pages wanted cover every page, or when B
 * covers the head (deviation: the authors' floor(B/P) pages would then skip part of it; here a
 * covering budget equals the full cache, as for every method).
 * Cost recorded per call: the summaries, pages * 2 * d floats.
 */
import type { MethodEntry } from './method.ts';
import type { DecodeSelector, Selection, SelectView } from './press.ts';
import { PageSummary } from '../kv/summary.ts';
import { pageSlots, stageSelectInputs, topKSelect } from './util.ts';
import type { Runtime } from '../runtime/wasm.ts';

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
  /** Fewest pages read (the authors' code: 3). */
  minPages: number;
  /** Layers 0..denseLayers-1 attend to everything (the authors' code: 2). */
  denseLayers: number;
  /** 'head': one page set per query head; 'group': one per KV head, bound = max over the group. */
  gqa: 'head' | 'group';
}

export class QuestSelector implements DecodeSelector {
  readonly name = 'quest';
  readonly summaryPage: number;
  readonly budget: number;
  private opts: QuestOptions;

  constructor(opts: QuestOptions) {
    this.opts = opts;
    this.budget = opts.budget;
    this.summaryPage = opts.page;
  }

  select(view: SelectView): Selection {
    if (view.layer < this.opts.denseLayers) return null;
    const n = view.length;
    const P = this.summaryPage;
    const d = view.headDim;
    const pages = Math.ceil(n / P);
    const want = Math.max(this.opts.minPages, Math.floor(this.budget / P));
    // A budget that covers the head reads it whole (the authors' floor(B/P) would leave its last partial page out).
    if (this.budget >= n || want >= pages) return null;
    let summary = view.summary;
    if (!summary || summary.page !== P || summary.pages < pages) {
      // The session keeps summaries when summaryPage is declared; rebuilding is only a safety net and reads K.
      summary = new PageSummary(P, d);
      summary.rebuild(view.keys(), n);
      view.countRead(n * d * 4, 0);
    }
    view.countRead(0, pages * 2 * d * 4);
    const sets = this.opts.gqa === 'group' || view.group === 1 ? 1 : view.group;
    if (view.runtime) return selectWasm(view.runtime, view.q, view.group, d, summary, pages, P, n, want, sets);
    if (sets === 1) {
      return pageSlots(topKSelect(questPageBounds(view.q, view.group, d, summary, pages), want), P, n);
    }
    const out: Int32Array[] = [];
    for (let g = 0; g < view.group; g++) {
      const bound = questPageBounds(view.q.subarray(g * d, (g + 1) * d), 1, d, summary, pages);
      out.push(pageSlots(topKSelect(bound, want), P, n));
    }
    return out;
  }
}

/**
 * QuestSelector.select's choice in one kernel call (assembly/select.ts questSelect: the same rules
 * and f64 order as questPageBounds, topKSelect and pageSlots), on inputs staged by stageSelectInputs;
 * the kernel writes each set's slots into the step arena.
 */
function selectWasm(rt: Runtime, q: Float32Array, G: number, d: number, summary: PageSummary, pages: number, P: number, n: number, want: number, sets: number): Selection {
  const [qPtr, minPtr, maxPtr, slotPtr, countPtr, wsPtr] = stageSelectInputs(rt, q, G, d, summary, pages, [sets * n * 4, sets * 4, rt.exports.questSelectScratch(pages)]);
  rt.exports.questSelect(slotPtr!, countPtr!, qPtr!, minPtr!, maxPtr!, wsPtr!, G, d, pages, P, n, want, sets);
  const counts = rt.i32(countPtr!, sets);
  const lists = Array.from(counts, (c, s) => rt.i32(slotPtr! + s * n * 4, c).slice());
  return sets === 1 ? lists[0]! : lists;
}

export const questEntry: MethodEntry = {
  name: 'quest',
  summary: 'Quest: per step and query head, read the top max(3, B/page) pages by their min/max upper bound on q.k; the first two layers dense',
  options: {
    page: { type: 'int', default: 16, min: 1, help: 'slots per page (summary granularity)' },
    min_pages: { type: 'int', default: 3, min: 1, help: 'fewest pages read per step' },
    dense_layers: { type: 'int', default: 2, min: 0, help: 'first layers that attend to every slot' },
    gqa: { type: 'string', default: 'head', choices: ['head', 'group'], help: "'head': pages per query head (the authors' code); 'group': one set per KV head, bound max over the group" },
  },
  create: (ctx, opts) => ({
    selector: new QuestSelector({
      budget: ctx.budget,
      page: opts.page as number,
      minPages: opts.min_pages as number,
      denseLayers: opts.dense_layers as number,
      gqa: opts.gqa as 'head' | 'group',
    }),
  }),
};

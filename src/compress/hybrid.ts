/**
 * hybrid (RocketKV stage 2, decode-time selector): a SparQ-style approximation read from Quest-style
 * page summaries, then exact attention over the top-k tokens:
 *
 *   ch    = top-r channels of sum_g |Qg|                       shared by the group
 *   sgn_i = max if sum_g Qg[i] > 0 else min                      per channel in ch
 *   S_g   = Qg[ch] . summary[page][ch, sgn]                      per page, per query head
 *   P_g   = softmax over TOKENS of S_g / sqrt(d * sum|Qg[ch]| / sum|Qg|), each token carrying its
 *           page's score (SparQ temperature per query head)
 *   read exactly the top-k tokens of sum_g P_g
 *
 * Source: RocketKV (arXiv 2502.14051) and NVlabs/RocketKV (rocket.py expands page scores to tokens,
 * softmaxes over tokens and takes torch.topk of k tokens). Defaults (page, r, topk) come from the
 * budget split (budget.ts); local_window = 0 as in the paper.
 * Rules where the code is silent: tokens of one page tie, and ties go to the lower slot, so pages
 * are read whole in score order (ties to the lower page) and the last one taken is cut to its
 * lowest slots to make exactly k tokens. The last `local_window` slots are added to that set. The
 * head is read whole (null) when its length is at most `budget` (default topk; the registry passes
 * --kv-budget, whose full read then fits the per-step traffic budget) or when the selection would
 * cover every slot anyway.
 * Cost recorded per call: pages * r summary floats (one of min/max per chosen channel).
 */
import type { MethodContext, MethodEntry, OptionValues } from './method.ts';
import type { DecodeSelector, SelectView } from './press.ts';
import { PageSummary } from '../kv/summary.ts';
import type { Runtime } from '../runtime/wasm.ts';
import { rocketkvSplit, type RocketkvSplit } from './budget.ts';
import { groupAbsSum, selectInputsBytes, topKSelect, writeSelectInputs } from './util.ts';
import { HYBRID_JOB_COUNT, HYBRID_JOB_FIELDS } from './hybrid-job.ts';

/**
 * Per page, the sum over the group of the softmax over tokens of the approximate scores (each of
 * the page's tokens has that probability; the partial last page holds `n - (pages-1) * page` tokens).
 * With a runtime the arithmetic runs in the wasm kernel (assembly/select.ts); without one, here.
 * Both use f64 in the same order of operations.
 */
export function hybridPageScores(
  q: Float32Array, group: number, d: number, summary: PageSummary, pages: number, channels: Int32Array, n: number, rt?: Runtime,
): Float64Array {
  const P = summary.page;
  const lastCount = n - (pages - 1) * P;
  const r = channels.length;
  // Gather once, shared by the group: per page, the r chosen channels of the summary side picked
  // by the sign of the group's summed query (max if positive, else min).
  const sub = new Float64Array(pages * r);
  for (let j = 0; j < r; j++) {
    const c = channels[j]!;
    let sum = 0;
    for (let g = 0; g < group; g++) sum += q[g * d + c]!;
    const side = sum > 0 ? summary.max : summary.min;
    for (let p = 0, o = c, w = j; p < pages; p++, o += d, w += r) sub[w] = side[o]!;
  }
  const qc = new Float64Array(group * r);
  const temps = new Float64Array(group);
  for (let g = 0; g < group; g++) {
    const qo = g * d;
    let absAll = 0;
    for (let i = 0; i < d; i++) absAll += Math.abs(q[qo + i]!);
    let absCh = 0;
    for (let j = 0; j < r; j++) {
      qc[g * r + j] = q[qo + channels[j]!]!;
      absCh += Math.abs(qc[g * r + j]!);
    }
    // A zero query has no direction: its scores are all 0, any finite temperature gives uniform.
    temps[g] = absAll > 0 && absCh > 0 ? Math.sqrt((d * absCh) / absAll) : 1;
  }
  if (rt) return pageSoftmaxSumWasm(rt, sub, qc, temps, pages, r, group, P, lastCount);
  const total = new Float64Array(pages);
  const s = new Float64Array(pages);
  for (let g = 0; g < group; g++) {
    let max = -Infinity;
    for (let p = 0, so = 0; p < pages; p++, so += r) {
      let dot = 0;
      for (let j = 0; j < r; j++) dot += qc[g * r + j]! * sub[so + j]!;
      s[p] = dot / temps[g]!;
      if (s[p]! > max) max = s[p]!;
    }
    let sum = 0;
    for (let p = 0; p < pages; p++) {
      s[p] = Math.exp(s[p]! - max);
      sum += s[p]! * (p === pages - 1 ? lastCount : P);
    }
    for (let p = 0; p < pages; p++) total[p] += s[p]! / sum;
  }
  return total;
}

function pageSoftmaxSumWasm(rt: Runtime, sub: Float64Array, qc: Float64Array, temps: Float64Array, pages: number, r: number, group: number, page: number, lastCount: number): Float64Array {
  const bytes = 8 * (sub.length + qc.length + temps.length + 2 * pages);
  const base = rt.alloc(bytes, 64);
  try {
    const mem = new Float64Array(rt.memory.buffer, base, bytes / 8);
    mem.set(sub, 0);
    mem.set(qc, sub.length);
    mem.set(temps, sub.length + qc.length);
    const outOff = sub.length + qc.length + temps.length;
    rt.exports.pageSoftmaxSum(base + outOff * 8, base, base + sub.length * 8, base + (sub.length + qc.length) * 8, base + (outOff + pages) * 8, pages, r, group, page, lastCount);
    return new Float64Array(rt.memory.buffer, base + outOff * 8, pages).slice();
  } finally {
    rt.free(base);
  }
}

export interface HybridOptions {
  /** Slots per summary page. */
  page: number;
  /** Channels of the approximate pass. */
  r: number;
  /** Exact tokens read per step. */
  topk: number;
  /** The last slots always read, in addition to the top-k. */
  localWindow: number;
  /** Heads of at most this many slots are read whole; default topk. */
  budget?: number;
}

export class HybridSelector implements DecodeSelector {
  readonly name = 'hybrid';
  readonly summaryPage: number;
  readonly r: number;
  readonly topk: number;
  readonly localWindow: number;
  readonly budget: number;

  constructor(opts: HybridOptions) {
    this.summaryPage = opts.page;
    this.r = opts.r;
    this.topk = opts.topk;
    this.localWindow = opts.localWindow;
    this.budget = opts.budget ?? opts.topk;
  }

  /** Every head on the kernel path in one call, spread over threads (its results are select's). */
  selectMany(views: readonly SelectView[]): (Int32Array | null)[] {
    const out: (Int32Array | null)[] = new Array(views.length).fill(null);
    const batch: HybridJob[] = [];
    const at: number[] = [];
    let rt: Runtime | null = null;
    for (let i = 0; i < views.length; i++) {
      const v = views[i]!;
      if (!v.runtime) { out[i] = this.select(v); continue; }
      const job = this.prepare(v);
      if (job === null) continue;
      rt = v.runtime;
      batch.push({ q: v.q, G: v.group, d: v.headDim, summary: job.summary, pages: job.pages, n: v.length, r: job.r });
      at.push(i);
    }
    if (rt && batch.length) {
      const picked = selectWasm(rt, batch, this.summaryPage, this.topk, this.localWindow);
      for (let b = 0; b < batch.length; b++) out[at[b]!] = picked[b]!;
    }
    return out;
  }

  /** What a head's choice needs (its summary, pages and channels), counting the bytes read; null when it reads every slot. */
  private prepare(view: SelectView): { summary: PageSummary; pages: number; r: number } | null {
    const n = view.length;
    const P = this.summaryPage;
    const d = view.headDim;
    const k = this.topk;
    if (n <= this.budget || n <= k || n <= this.localWindow) return null;
    const pages = Math.ceil(n / P);
    let summary = view.summary;
    if (!summary || summary.page !== P || summary.pages < pages) {
      // The session keeps summaries when summaryPage is declared; rebuilding is only a safety net and reads K.
      summary = new PageSummary(P, d);
      summary.rebuild(view.keys(), n);
      view.countRead(n * d * 4, 0);
    }
    const r = Math.min(d, Math.max(1, this.r));
    view.countRead(0, pages * r * 4);
    return { summary, pages, r };
  }

  select(view: SelectView): Int32Array | null {
    const job = this.prepare(view);
    if (job === null) return null;
    const { summary, pages, r } = job;
    const n = view.length;
    const P = this.summaryPage;
    const d = view.headDim;
    const k = this.topk;
    if (view.runtime) return selectWasm(view.runtime, [{ q: view.q, G: view.group, d, summary, pages, n, r }], P, k, this.localWindow)[0]!;
    const channels = topKSelect(groupAbsSum(view.q, view.group, d), r);
    const scores = hybridPageScores(view.q, view.group, d, summary, pages, channels, n);

    // Exactly k tokens: whole pages by score (ties to the lower page), the last one cut to its lowest slots.
    const take = new Int32Array(pages); // tokens read from each page, from its first slot
    const order = Array.from({ length: pages }, (_, p) => p).sort((a, b) => scores[b]! - scores[a]! || a - b);
    let left = k;
    for (const p of order) {
      if (left <= 0) break;
      const size = Math.min(P, n - p * P);
      take[p] = Math.min(size, left);
      left -= take[p]!;
    }
    const localFrom = Math.max(0, n - this.localWindow);
    const picked = (s: number): boolean => s - ((s / P) | 0) * P < take[(s / P) | 0]! || s >= localFrom;
    let count = 0;
    for (let s = 0; s < n; s++) if (picked(s)) count++;
    if (count >= n) return null;
    const out = new Int32Array(count);
    let m = 0;
    for (let s = 0; s < n; s++) if (picked(s)) out[m++] = s;
    return out;
  }
}

/** One stored head's inputs to the kernel. */
interface HybridJob { q: Float32Array; G: number; d: number; summary: PageSummary; pages: number; n: number; r: number }

/**
 * HybridSelector.select's choice for each job, in one kernel call over all of them
 * (assembly/select.ts hybridSelectJobs, each head as hybridSelect alone: the same rules and f64
 * order as the TypeScript path above), spread over threads. Inputs, work spaces, slot lists and
 * the job records all live in the step arena.
 */
function selectWasm(rt: Runtime, jobs: readonly HybridJob[], P: number, k: number, localWindow: number): (Int32Array | null)[] {
  const regions = jobs.map((j) => [j.n * 4, rt.exports.hybridSelectScratch(j.d, j.pages, j.r, j.G)]);
  const sizes = jobs.map((j, i) => selectInputsBytes(j.G, j.d, j.pages, regions[i]!));
  const tableBytes = Math.ceil((jobs.length * HYBRID_JOB_FIELDS * 4) / 64) * 64;
  const base = rt.stepArena(tableBytes + sizes.reduce((a, b) => a + b, 0));
  const table = rt.i32(base, jobs.length * HYBRID_JOB_FIELDS);
  let at = base + tableBytes;
  let work = 0;
  jobs.forEach((j, i) => {
    const [qPtr, minPtr, maxPtr, slotPtr, wsPtr] = writeSelectInputs(rt, at, j.q, j.G, j.d, j.summary, j.pages, regions[i]!);
    at += sizes[i]!;
    table.set([slotPtr!, qPtr!, minPtr!, maxPtr!, wsPtr!, j.G, j.d, j.pages, P, j.n, j.r, k, localWindow, 0, 0, 0], i * HYBRID_JOB_FIELDS);
    work = Math.max(work, j.pages * j.G * j.r);
  });
  rt.k.hybridSelectJobs(base, jobs.length, work);
  const done = rt.i32(base, jobs.length * HYBRID_JOB_FIELDS);
  return jobs.map((_, i) => {
    const count = done[i * HYBRID_JOB_FIELDS + HYBRID_JOB_COUNT]!;
    return count < 0 ? null : rt.i32(done[i * HYBRID_JOB_FIELDS]! >>> 0, count).slice();
  });
}

/** The RocketKV split of one budget, for whichever stage a method builds from it. */
export function splitFor(ctx: MethodContext): RocketkvSplit {
  return rocketkvSplit({
    promptLength: ctx.promptLength,
    maxNewTokens: ctx.maxNewTokens,
    budget: ctx.budget,
    headDim: ctx.shape.headDim,
    modelMaxLen: ctx.maxPositionEmbeddings,
  });
}

/** An option if set (> 0), else the split's value. */
export function pick(v: unknown, fallback: number): number {
  return (v as number) > 0 ? (v as number) : fallback;
}

/** Stage 2 from the split, each knob overridable (`page`, `r`, `topk`, `local_window`). */
export function hybridFromSplit(ctx: MethodContext, opts: OptionValues, split: RocketkvSplit = splitFor(ctx)): HybridSelector {
  return new HybridSelector({
    page: pick(opts.page, split.page),
    r: pick(opts.r, split.r),
    topk: pick(opts.topk, split.topk),
    localWindow: opts.local_window as number,
    budget: ctx.budget,
  });
}

export const hybridEntry: MethodEntry = {
  name: 'hybrid',
  summary: 'RocketKV stage 2 alone: page min/max + top-r channels approximate attention, read the top-k tokens exactly',
  options: {
    page: { type: 'int', default: 0, min: 0, help: 'slots per summary page; 0 = from the RocketKV budget split' },
    r: { type: 'int', default: 0, min: 0, help: 'channels of the approximate pass; 0 = from the RocketKV budget split' },
    topk: { type: 'int', default: 0, min: 0, help: 'exact tokens read per step; 0 = from the split (floor(B/2))' },
    local_window: { type: 'int', default: 0, min: 0, help: 'last slots always read in addition (0 = as in the paper)' },
  },
  create: (ctx, opts) => ({ selector: hybridFromSplit(ctx, opts) }),
};

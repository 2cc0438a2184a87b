/**
 * KV-Compress (arXiv 2410.00161; vLLM fork IsaacRe/vllm-kvcompress): paged eviction ranked across
 * every layer and KV head of a sequence at once, freeing whole blocks.
 *
 * Metric of slot j of KV head h (GQA group of G query heads, last w prompt queries):
 *   M[j] = sum_g pool( sum_i A[g, i, j]^2 )          pool = maxpool(kernel 7) per query head, or identity
 *   decode (continual): M[j] += sum_g A[g, t, j]^2 at every step t; a new slot starts at 0.
 * Protected: the last protected_window - 1 cached positions (position >= tokensSeen - (P - 1)) have
 *   metric +inf. The fork applies its protected window of P positions before the newest token is
 *   cached, so it protects P - 1 cached tokens; counted the same way here.
 * Ranking: per head, slots by metric ascending; a = length mod block (block if full); freeing e
 *   blocks costs its lowest (e-1)*block + a slots, gate(e) = largest metric among them. All
 *   (head, e) candidates of the sequence sorted by gate; the first E with a finite gate are taken
 *   (per head they form a prefix e = 1..k).
 * Budget (an AVERAGE per head over N = layers * H_kv stored heads, block = ctx.blockSlots), rounded
 *   up to whole blocks per head as the fork's scheduler does: C = ceil(budget / block) * block;
 *   E = allocated blocks - N * C / block, and nothing is evicted while the total slots <= C * N
 *   (so budget >= length keeps everything).
 * Continual trigger: after a decode step, evict when total slots >= C * N + block (the sequence has
 *   grown one block of KVs past its budget, as the fork's scheduler counts it); afterwards total
 *   slots <= C * N.
 *
 * Defaults: the recipe of the paper's fixed-size runs in the fork: metric window 8, max-pooled
 * metric (its `maxpool` default), protected window 8, compressed once after prefill (continual
 * eviction, the serving runs' mode, is `continual=true`; those runs used protected_window 32).
 * Deliberate deviations: ties rank by (metric, slot index) within a head and by (gate, layer*H_kv+h,
 * e) across candidates; a head never frees its last block (it keeps >= min(length, block) slots,
 * so attention always has keys; no effect when protected_window > block); the prefill eviction
 * happens at prefill end on the uncompressed cache, as in the original.
 */
import type { MethodContext, MethodEntry, OptionValues } from './method.ts';
import type { EvictionMethod, LayerView, PlanContext } from './press.ts';
import { pool1d } from './util.ts';

/** Squared window attention, optionally max-pooled per query head, summed over the group: one row per stored head. */
export function kvcompressMetric(view: LayerView, metricWindow: number, poolKernel: number): Float32Array[] {
  const w = Math.min(metricWindow, view.windowRows);
  const out: Float32Array[] = [];
  for (let h = 0; h < view.heads; h++) {
    const n = view.length(h);
    const metric = new Float64Array(n);
    if (w > 0) {
      const probs = view.windowProbs(h, w);
      const perQueryHead = new Float64Array(n);
      for (let g = 0; g < view.group; g++) {
        perQueryHead.fill(0);
        for (let i = 0; i < w; i++) {
          const row = (g * w + i) * n;
          for (let j = 0; j < n; j++) { const p = probs[row + j]!; perQueryHead[j]! += p * p; }
        }
        const pooled = poolKernel > 1 ? pool1d(perQueryHead, poolKernel, 'max') : perQueryHead;
        for (let j = 0; j < n; j++) metric[j]! += pooled[j]!;
      }
    }
    out.push(Float32Array.from(metric));
  }
  return out;
}

/** What one cross-head ranking needs: metrics and slot positions per [layer][head]. */
export interface KvcRankInput {
  metrics: ArrayLike<number>[][];
  lengths: number[][];
  positions: Int32Array[][];
  tokensSeen: number;
  protectedWindow: number;
  /** Average slots per head. */
  budget: number;
  blockSlots: number;
}

/**
 * Kept slots per [layer][head] (ascending) after freeing E blocks by gate order, or null when
 * nothing is evicted (budget covers the sequence, or every candidate gate is +inf).
 */
export function kvcompressKeep(inp: KvcRankInput): Int32Array[][] | null {
  const { lengths, blockSlots: block } = inp;
  let heads = 0;
  let slots = 0;
  let allocatedBlocks = 0;
  for (const layer of lengths) {
    for (const n of layer) { heads++; slots += n; allocatedBlocks += Math.ceil(n / block); }
  }
  const perHeadBlocks = Math.ceil(inp.budget / block);
  if (slots <= perHeadBlocks * block * heads) return null;
  const evictBlocks = allocatedBlocks - perHeadBlocks * heads;
  if (evictBlocks <= 0) return null;

  const protectFrom = inp.tokensSeen - Math.max(0, inp.protectedWindow - 1);
  // Per flat head: slots by metric ascending (protected last as +inf), and its candidate gates.
  const orders: Int32Array[] = [];
  const gates: number[] = [];
  const gateHead: number[] = [];
  const gateE: number[] = [];
  let flat = 0;
  for (let l = 0; l < lengths.length; l++) {
    for (let h = 0; h < lengths[l]!.length; h++, flat++) {
      const n = lengths[l]![h]!;
      const pos = inp.positions[l]![h]!;
      const src = inp.metrics[l]![h]!;
      const m = new Float64Array(n);
      for (let j = 0; j < n; j++) m[j] = pos[j]! >= protectFrom ? Infinity : src[j]!;
      const order = Int32Array.from({ length: n }, (_, j) => j);
      order.sort((a, b) => (m[a]! - m[b]!) || a - b);
      orders.push(order);
      const tail = n % block || block;
      const headBlocks = Math.ceil(n / block);
      // e = headBlocks would empty the head: never a candidate.
      for (let e = 1; e < headBlocks; e++) {
        const gate = m[order[(e - 1) * block + tail - 1]!]!;
        if (gate === Infinity) break;
        gates.push(gate); gateHead.push(flat); gateE.push(e);
      }
    }
  }
  const cand = Int32Array.from({ length: gates.length }, (_, i) => i);
  cand.sort((a, b) => (gates[a]! - gates[b]!) || (gateHead[a]! - gateHead[b]!) || (gateE[a]! - gateE[b]!));
  const freed = new Int32Array(heads);
  const taken = Math.min(evictBlocks, cand.length);
  if (taken === 0) return null;
  for (let c = 0; c < taken; c++) {
    const i = cand[c]!;
    freed[gateHead[i]!] = Math.max(freed[gateHead[i]!]!, gateE[i]!);
  }

  const kept: Int32Array[][] = [];
  flat = 0;
  for (let l = 0; l < lengths.length; l++) {
    const row: Int32Array[] = [];
    for (let h = 0; h < lengths[l]!.length; h++, flat++) {
      const n = lengths[l]![h]!;
      const e = freed[flat]!;
      if (e === 0) { row.push(Int32Array.from({ length: n }, (_, j) => j)); continue; }
      const evictCount = (e - 1) * block + (n % block || block);
      row.push(orders[flat]!.slice(evictCount).sort());
    }
    kept.push(row);
  }
  return kept;
}

export interface KvcompressOptions {
  metricWindow: number;
  pooling: 'none' | 'max';
  protectedWindow: number;
  continual: boolean;
}

/** The max-pool kernel of the paper's pooled variant. */
const POOL_KERNEL = 7;

export class KvCompress implements EvictionMethod {
  readonly name = 'kvcompress';
  readonly windowSize: number;
  readonly expandGqa = false;
  readonly minLengthToEvict = 0;
  /** Present only in continual mode, so the session computes decode attention only when it is used. */
  observeDecode?: (layer: number, h: number, probs: Float32Array, group: number) => void;
  evictAfterStep?: (ctx: PlanContext) => Int32Array[][] | null;
  readonly opts: KvcompressOptions;
  /** Continual mode: the running metric of every slot, per [layer][head], in slot order. */
  private metrics: Float64Array[][] = [];

  constructor(opts: KvcompressOptions) {
    this.opts = opts;
    this.windowSize = opts.metricWindow;
    if (opts.continual) {
      this.observeDecode = (layer, h, probs, group) => this.observe(layer, h, probs, group);
      this.evictAfterStep = (ctx) => this.evictIfOverBudget(ctx);
    }
  }

  /** The budget is an average per head, rounded up to whole blocks as the fork's scheduler does. */
  keptPerHead(budget: number, blockSlots: number): number {
    return Math.ceil(budget / blockSlots) * blockSlots;
  }

  score(view: LayerView): Float32Array[] {
    return kvcompressMetric(view, this.opts.metricWindow, this.opts.pooling === 'max' ? POOL_KERNEL : 1);
  }

  plan(scores: Float32Array[][], ctx: PlanContext): Int32Array[][] {
    if (this.opts.continual) this.metrics = scores.map((layer) => layer.map((s) => Float64Array.from(s)));
    const kept = kvcompressKeep(this.rankInput(scores, ctx));
    return kept ?? ctx.lengths.map((layer) => layer.map((n) => Int32Array.from({ length: n }, (_, j) => j)));
  }

  onCompact(layer: number, h: number, keep: Int32Array): void {
    const m = this.metrics[layer]?.[h];
    if (!m) return;
    const next = new Float64Array(keep.length);
    for (let i = 0; i < keep.length; i++) next[i] = m[keep[i]!]!;
    this.metrics[layer]![h] = next;
  }

  /** The metric of (layer, h) grown to `n` slots (appended slots start at 0). */
  private metricOf(layer: number, h: number, n: number): Float64Array {
    const row = (this.metrics[layer] ??= []);
    const m = row[h];
    if (m && m.length === n) return m;
    if (m && m.length > n) throw new Error(`kvcompress: head ${layer}/${h} has ${n} slots but ${m.length} metrics (missed onCompact)`);
    const grown = new Float64Array(n);
    if (m) grown.set(m);
    row[h] = grown;
    return grown;
  }

  private observe(layer: number, h: number, probs: Float32Array, group: number): void {
    const n = probs.length / group;
    const m = this.metricOf(layer, h, n);
    for (let g = 0; g < group; g++) {
      const o = g * n;
      for (let j = 0; j < n; j++) { const p = probs[o + j]!; m[j]! += p * p; }
    }
  }

  private evictIfOverBudget(ctx: PlanContext): Int32Array[][] | null {
    let heads = 0;
    let slots = 0;
    for (const layer of ctx.lengths) for (const n of layer) { heads++; slots += n; }
    if (slots < Math.ceil(ctx.budget / ctx.blockSlots) * ctx.blockSlots * heads + ctx.blockSlots) return null;
    const metrics = ctx.lengths.map((layer, l) => layer.map((n, h) => this.metricOf(l, h, n)));
    return kvcompressKeep(this.rankInput(metrics, ctx));
  }

  private rankInput(metrics: ArrayLike<number>[][], ctx: PlanContext): KvcRankInput {
    return {
      metrics,
      lengths: ctx.lengths,
      positions: ctx.positions,
      tokensSeen: ctx.tokensSeen,
      protectedWindow: this.opts.protectedWindow,
      budget: ctx.budget,
      blockSlots: ctx.blockSlots,
    };
  }
}

export const kvcompressEntry: MethodEntry = {
  name: 'kvcompress',
  summary: 'KV-Compress: squared-attention metric, blocks evicted across all layers and heads (average budget per head)',
  options: {
    metric_window: { type: 'int', default: 8, min: 1, help: 'last prompt queries whose squared attention form the metric' },
    pooling: { type: 'string', default: 'max', choices: ['none', 'max'], help: 'max-pool the metric (kernel 7) per query head before the GQA sum' },
    protected_window: { type: 'int', default: 8, min: 0, help: 'recent positions never evicted, the newest counted as the fork does (protected_window - 1 cached tokens)' },
    continual: { type: 'boolean', default: false, help: 'accumulate decode attention and evict again each time the sequence grows a block past its budget (the serving runs)' },
  },
  create(_ctx: MethodContext, opts: OptionValues) {
    return {
      eviction: new KvCompress({
        metricWindow: opts.metric_window as number,
        pooling: opts.pooling as 'none' | 'max',
        protectedWindow: opts.protected_window as number,
        continual: opts.continual as boolean,
      }),
    };
  },
};

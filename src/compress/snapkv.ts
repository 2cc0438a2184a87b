/**
 * snapkv: at the end of prefill, score each prompt KV by the attention the last W prompt queries
 * pay it, and keep the best per head plus the window itself.
 *
 *   A = softmax(causal(Q[-W:] K^T / sqrt(d)))      per query head, over all L keys
 *   s = mean over the W window queries of A[:, :L-W]  (window columns dropped)
 *   s = pool1d(s, kernel, stride 1, same padding)   avg (zero padding counted, as PyTorch) or max
 *   keep per head: top-(B - W) of s + the W window tokens      (ties: lower slot first)
 *
 * Source: SnapKV (arXiv 2404.14469) and its code (window 32, kernel 7 as in ALGORITHMS.md's
 * LongBench setting); kvpress's SnapKVPress for the group handling.
 * Budget B (--kv-budget) = tokens kept per stored head, window included; B >= L keeps all.
 * Defaults: window 32, kernel 7, pooling avg, gqa expand.
 * gqa: 'expand' (default) = the original per-query-head SnapKV: the session gives every query head
 *   its own copy of the cache before scoring (group = 1 here), so each query head keeps its own B
 *   tokens and the stored cache is G times larger. It is the default because the papers we compare
 *   with (RocketKV, KV-Compress) count SnapKV that way. 'group' = one set per KV head, scored by
 *   the MEAN over the group's query heads (kvpress's rule; a sum would rank identically).
 * Deviations: a budget below W shrinks the window to B (the originals assert B > W); the kernel
 *   must be odd so that "same" padding keeps the length (PyTorch's k//2 padding grows it otherwise).
 */
import { TopKScorer } from './scorer.ts';
import { UsageError } from '../errors.ts';
import type { MethodEntry, OptionSpec, OptionValues } from './method.ts';
import type { LayerView } from './press.ts';
import { pool1d, scoresWithWindow, windowAttentionSum } from './util.ts';

export type Pooling = 'avg' | 'max';

export interface SnapKVConfig {
  /** Tokens kept per stored head, window included. */
  budget: number;
  window: number;
  kernel: number;
  pooling: Pooling;
  /** Give each query head its own kept set (original SnapKV) instead of one per KV head. */
  expandGqa: boolean;
}

/** SnapKV's scores of every stored head of a layer: pooled mean window attention, window slots = +inf. */
export function snapkvScores(view: LayerView, window: number, kernel: number, pooling: Pooling): Float32Array[] {
  const out: Float32Array[] = [];
  for (let h = 0; h < view.heads; h++) {
    const n = view.length(h);
    const w = Math.min(window, view.windowRows, n);
    const sum = windowAttentionSum(view, h, w);
    const rows = w * view.group;
    for (let j = 0; j < sum.length; j++) sum[j] = sum[j]! / rows;
    out.push(scoresWithWindow(pool1d(sum, kernel, pooling), n, w));
  }
  return out;
}

export function checkKernel(method: string, kernel: number): void {
  if (kernel % 2 !== 1) throw new UsageError(`${method}: kernel must be an odd number of slots (same padding), got ${kernel}`);
}

/** The options SnapKV and the methods built on its scores (pyramidkv, adakv) share. */
export const snapkvOptions: Record<string, OptionSpec> = {
  window: { type: 'int', default: 32, min: 1, help: 'observation window: last prompt queries that score the KVs (always kept)' },
  kernel: { type: 'int', default: 7, min: 1, help: 'pooling kernel along positions (odd)' },
  pooling: { type: 'string', default: 'avg', choices: ['avg', 'max'], help: 'pooling of the window scores' },
  gqa: { type: 'string', default: 'expand', choices: ['expand', 'group'], help: 'expand: one kept set per query head (original); group: one per KV head (mean over the group)' },
};

/** The SnapKV settings of a request (window clamped to the budget). */
export function snapkvConfig(method: string, budget: number, opts: OptionValues): SnapKVConfig {
  const kernel = opts['kernel'] as number;
  checkKernel(method, kernel);
  return {
    budget,
    window: Math.min(opts['window'] as number, budget),
    kernel,
    pooling: opts['pooling'] as Pooling,
    expandGqa: opts['gqa'] === 'expand',
  };
}

/** Top-B per head (scorer.ts); the window's +inf scores make it part of the B. */
export class SnapKV extends TopKScorer {
  readonly name: string = 'snapkv';
  protected readonly cfg: SnapKVConfig;

  constructor(cfg: SnapKVConfig) {
    super(cfg.budget, cfg.window, cfg.expandGqa);
    this.cfg = cfg;
  }

  score(view: LayerView): Float32Array[] {
    return snapkvScores(view, this.cfg.window, this.cfg.kernel, this.cfg.pooling);
  }
}

export const snapkvEntry: MethodEntry = {
  name: 'snapkv',
  summary: 'SnapKV: keep the KVs the last prompt queries attend to most (pooled), plus that window',
  options: snapkvOptions,
  create: (ctx, opts) => ({ eviction: new SnapKV(snapkvConfig('snapkv', ctx.budget, opts)) }),
};

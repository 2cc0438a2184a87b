/**
 * snapkvpp: RocketKV stage 1 (SnapKV++), once at the end of prefill and only if L > prompt_budget.
 *
 *   A = softmax(causal(Q[-W:] K^T / sqrt(d)))       per query head, over all L keys
 *   s = sum over the W window queries of A[:, :L-W]  (window columns dropped)
 *   s = sum over the G query heads of each group     one row per KV head (GQA-aware, no expansion)
 *   s = maxpool1d(s, kernel 63, stride 1, padding 31)
 *   keep per KV head: top-(prompt_budget - W) of s + the W window tokens   (ties: lower slot first)
 *
 * Source: RocketKV (arXiv 2502.14051), NVlabs/RocketKV `rocket.py` and `infllm_utils.py::compress`
 * (fixed kernel 63; the v1 paper's adaptive pooling size is not implemented).
 * Budget: as a method on its own (`snapkvpp`), the --kv-budget IS the prompt budget (tokens kept
 * per KV head, window included); the `rocketkv` composite constructs `SnapKVPlusPlus` with the
 * prompt budget of its split (budget.ts). Decode tokens are appended and never evicted here.
 * Defaults: window 32 (128 for multi-turn runs), kernel 63.
 * Deviations: a prompt budget below W shrinks the window to it; the kernel must be odd.
 */
import { TopKScorer } from './scorer.ts';
import type { MethodEntry } from './method.ts';
import type { LayerView } from './press.ts';
import { checkKernel } from './snapkv.ts';
import { pool1d, scoresWithWindow, windowAttentionSum } from './util.ts';

export interface SnapKVPlusPlusConfig {
  /** Tokens kept per KV head, window included. */
  promptBudget: number;
  window: number;
  kernel: number;
}

/** SnapKV++ scores of every KV head of a layer: group-summed window attention, max-pooled; window slots = +inf. */
export function snapkvppScores(view: LayerView, window: number, kernel: number): Float32Array[] {
  const out: Float32Array[] = [];
  for (let h = 0; h < view.heads; h++) {
    const n = view.length(h);
    const w = Math.min(window, view.windowRows, n);
    out.push(scoresWithWindow(pool1d(windowAttentionSum(view, h, w), kernel, 'max'), n, w));
  }
  return out;
}

/**
 * Top-prompt_budget per KV head (scorer.ts; the window's +inf scores count in it). Its budget is
 * the prompt budget, not ctx.budget, which is the step budget under rocketkv.
 */
export class SnapKVPlusPlus extends TopKScorer {
  readonly name = 'snapkv++';
  private readonly kernel: number;

  constructor(cfg: SnapKVPlusPlusConfig) {
    checkKernel('snapkv++', cfg.kernel);
    super(cfg.promptBudget, Math.min(cfg.window, cfg.promptBudget));
    this.kernel = cfg.kernel;
  }

  get promptBudget(): number {
    return this.budget;
  }

  score(view: LayerView): Float32Array[] {
    return snapkvppScores(view, this.windowSize, this.kernel);
  }
}

export const snapkvppEntry: MethodEntry = {
  name: 'snapkv++',
  summary: 'SnapKV++ (RocketKV stage 1): GQA-aware SnapKV with max pooling 63; the budget is the prompt budget',
  options: {
    window: { type: 'int', default: 32, min: 1, help: 'observation window: last prompt queries that score the KVs (always kept)' },
    kernel: { type: 'int', default: 63, min: 1, help: 'max-pooling kernel along positions (odd)' },
  },
  create: (ctx, opts) => ({
    eviction: new SnapKVPlusPlus({ promptBudget: ctx.budget, window: opts['window'] as number, kernel: opts['kernel'] as number }),
  }),
};

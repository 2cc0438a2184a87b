/**
 * pyramidkv: SnapKV scores, with a per-layer budget that falls linearly from the first layer to
 * the last around the mean B.
 *
 *   X    = B - W                         (the scored, non-window part of the mean budget)
 *   min  = X / beta;  max = 2X - min     (so the layers' mean is X)
 *   if max >= L - W: max = L - W; min = 2X - max      (no layer keeps more than it has)
 *   step = (max - min) / (layers - 1)
 *   keep at layer l, per head: W + round(max - l * step), i.e. top of the SnapKV scores
 *
 * Source: PyramidKV (arXiv 2406.02069), its code `pyramidkv_utils.py::PyramidKVCluster.update_kv`
 * (the formula above applied to max_capacity_prompt - window_size, window added back), and
 * kvpress `presses/pyramidkv_press.py::get_layer_budget` (beta = 20, float steps and round()).
 * Budget B (--kv-budget) = tokens kept per head AVERAGED over layers, window included; B >= L keeps all.
 * Defaults: beta 20, and SnapKV's window 32, kernel 7, avg pooling, gqa expand (see snapkv.ts).
 * Deviations: kvpress applies the pyramid to the whole kept count and falls back to uniform SnapKV
 *   when its smallest layer would drop below window_size; we follow PyramidKV's own code (pyramid
 *   over B - W, window always kept on top), so there is no fallback except a single-layer model.
 *   Float steps with Python's half-to-even round() (kvpress) instead of the original's integer floor division.
 */
import type { MethodEntry } from './method.ts';
import { topK } from './press.ts';
import type { PlanContext } from './press.ts';
import { SnapKV, snapkvConfig, snapkvOptions } from './snapkv.ts';
import type { SnapKVConfig } from './snapkv.ts';

/** Round half to even, as Python's round() in kvpress (52.5 -> 52, 147.5 -> 148). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Tokens kept per head at each layer (window included) for a prompt of `length` tokens. */
export function pyramidLayerBudgets(budget: number, window: number, length: number, layers: number, beta: number): number[] {
  if (budget >= length) return new Array<number>(layers).fill(length);
  const x = budget - window;
  if (layers <= 1 || x <= 0) return new Array<number>(layers).fill(budget);
  let min = x / beta;
  let max = 2 * x - min;
  if (max >= length - window) {
    max = length - window;
    min = 2 * x - max;
  }
  const step = (max - min) / (layers - 1);
  return Array.from({ length: layers }, (_, l) => window + roundHalfEven(max - l * step));
}

export class PyramidKV extends SnapKV {
  override readonly layerwise: boolean = false;
  override readonly name = 'pyramidkv';
  private readonly beta: number;

  constructor(cfg: SnapKVConfig, beta: number) {
    super(cfg);
    this.beta = beta;
  }

  override plan(scores: Float32Array[][], ctx: PlanContext): Int32Array[][] {
    // Every head holds the whole prompt at prefill end; the longest stands for L.
    let length = 0;
    for (const layer of ctx.lengths) for (const n of layer) length = Math.max(length, n);
    const budgets = pyramidLayerBudgets(this.cfg.budget, this.cfg.window, length, scores.length, this.beta);
    return scores.map((layer, l) => layer.map((s) => topK(s, budgets[l]!)));
  }
}

export const pyramidkvEntry: MethodEntry = {
  name: 'pyramidkv',
  summary: 'PyramidKV: SnapKV with budgets falling linearly from lower to higher layers (mean = budget)',
  options: {
    ...snapkvOptions,
    beta: { type: 'number', default: 20, min: 1, help: 'pyramid steepness: the top layer keeps about (B - window) / beta scored tokens' },
  },
  create: (ctx, opts) => ({ eviction: new PyramidKV(snapkvConfig('pyramidkv', ctx.budget, opts), opts['beta'] as number) }),
};

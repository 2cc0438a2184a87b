/**
 * rocketkv: RocketKV's two stages from one budget (arXiv 2502.14051; NVlabs/RocketKV).
 *   B = the per-step traffic budget in equivalent full-KV tokens. budget.ts splits it:
 *   stage 1, SnapKV++ (snapkvpp.ts), keeps prompt_budget tokens per KV head after prefill when the
 *   prompt is longer than that; stage 2, hybrid sparse attention (hybrid.ts), reads the top-k tokens
 *   picked from page min/max summaries over the query's top-r channels at every decode step.
 * Defaults: window 32, pooling kernel 63, page/r/topk from the split, local_window 0 (as the paper).
 * Every knob overrides the split's value when set (> 0).
 *
 * rocketkv-mt (multi-turn): the same two stages, but stage 1 evicts nothing. At the end of each
 * turn's prompt SnapKV++ reruns over the whole history with that turn's last window queries and
 * yields a filtered view; that turn's decode runs stage 2 over the view while new tokens join
 * both the store and the view. No memory is saved, only traffic; later questions can reach tokens
 * an earlier question's view left out. The split is computed once, from the first turn.
 * Defaults as rocketkv's, except window 128: the observation window of RocketKV's official
 * multi-turn runs (ALGORITHMS.md: 32, or 128 for multi-turn benchmarks).
 */
import type { CompressionParts, MethodContext, MethodEntry, OptionValues } from './method.ts';
import { SnapKVPlusPlus } from './snapkvpp.ts';
import { hybridEntry, hybridFromSplit, pick, splitFor } from './hybrid.ts';

function rocketkvParts(ctx: MethodContext, opts: OptionValues): CompressionParts {
  const split = splitFor(ctx);
  return {
    eviction: new SnapKVPlusPlus({ promptBudget: pick(opts.prompt_budget, split.promptBudget), window: opts.window as number, kernel: opts.kernel as number }),
    selector: hybridFromSplit(ctx, opts, split),
  };
}

export const rocketkvEntry: MethodEntry = {
  name: 'rocketkv',
  summary: 'RocketKV: SnapKV++ eviction after prefill + hybrid sparse attention at decode, split from one traffic budget',
  options: {
    window: { type: 'int', default: 32, min: 1, help: 'observation window of prompt queries (SnapKV++)' },
    kernel: { type: 'int', default: 63, min: 1, help: 'max-pooling kernel over positions (SnapKV++, odd)' },
    prompt_budget: { type: 'int', default: 0, min: 0, help: 'tokens SnapKV++ keeps per KV head; 0 = from the split' },
    ...hybridEntry.options,
  },
  create: rocketkvParts,
};

export const rocketkvMtEntry: MethodEntry = {
  name: 'rocketkv-mt',
  summary: 'RocketKV multi-turn: full KV kept, SnapKV++ re-selects a filtered view at every turn, hybrid attention reads it',
  options: { ...rocketkvEntry.options, window: { ...rocketkvEntry.options['window']!, default: 128 } },
  create: (ctx, opts) => ({ ...rocketkvParts(ctx, opts), mode: 'view' }),
};

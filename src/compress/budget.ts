/**
 * RocketKV budget split: turns one per-step traffic budget B (in equivalent full-KV tokens) into
 * the stage-1 prompt budget (SnapKV++) and the stage-2 knobs (hybrid page, channels r, top-k).
 *
 *   S     = min(L + max_new_tokens, model_max_len)
 *   c     = max(1, S / B)                               total compression
 *   alpha = min(0.2 + 0.06 * log2(c), 0.8)              stage-1 share of the compression
 *   cap   = max(floor(S / c^alpha), min(2 * max_new_tokens, S))
 *   prompt_budget = cap - max_new_tokens                kept by SnapKV++, window included
 *   topk  = floor(B / 2)                                exact tokens read per step
 *   c2    = max(1, cap / B)
 *   page  = ceil(sqrt(c2)); if page > c2 then page = 1
 *   r     = floor(d * page / c2)                        channels read in the approximate pass
 *
 * Source: RocketKV (arXiv 2502.14051) and its official code (NVlabs/RocketKV, `infllm_utils.py::compress`).
 * Deviations (edge cases only, never hit by realistic settings): prompt_budget is floored at 0
 * (it would go negative only when model_max_len < max_new_tokens), topk and r are at least 1 (so
 * B = 1 or c2 > d^2 still read something), r is at most d.
 */

export interface RocketkvSplitInput {
  promptLength: number;
  maxNewTokens: number;
  /** B: the per-step traffic budget in equivalent full-KV tokens. */
  budget: number;
  headDim: number;
  modelMaxLen: number;
}

export interface RocketkvSplit {
  /** Sequence length the split plans for (prompt + new tokens, capped by the model). */
  S: number;
  /** Total compression S / B (at least 1). */
  c: number;
  /** Stage-1 share of the compression (as an exponent of c). */
  alpha: number;
  /** KV tokens held after stage 1 at the end of generation. */
  cap: number;
  /** Prompt tokens SnapKV++ keeps, observation window included. */
  promptBudget: number;
  /** Exact tokens the hybrid stage reads per step. */
  topk: number;
  /** Stage-2 compression cap / B (at least 1). */
  c2: number;
  /** Hybrid page size in slots. */
  page: number;
  /** Channels the hybrid approximate pass reads. */
  r: number;
}

export function rocketkvSplit(input: RocketkvSplitInput): RocketkvSplit {
  const { promptLength, maxNewTokens, budget, headDim: d, modelMaxLen } = input;
  const S = Math.min(promptLength + maxNewTokens, modelMaxLen);
  const c = Math.max(1, S / budget);
  const alpha = Math.min(0.2 + 0.06 * Math.log2(c), 0.8);
  const cap = Math.max(Math.floor(S / Math.pow(c, alpha)), Math.min(2 * maxNewTokens, S));
  const promptBudget = Math.max(0, cap - maxNewTokens);
  const topk = Math.max(1, Math.floor(budget / 2));
  const c2 = Math.max(1, cap / budget);
  let page = Math.ceil(Math.sqrt(c2));
  if (page > c2) page = 1;
  const r = Math.min(d, Math.max(1, Math.floor((d * page) / c2)));
  return { S, c, alpha, cap, promptBudget, topk, c2, page, r };
}

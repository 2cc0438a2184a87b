/**
 * adakv: SnapKV scores, then one budget per layer shared by its heads, so heads whose attention is
 * spread out keep more than heads whose attention is concentrated.
 *
 *   X = B - W                               scored (non-window) tokens per head on average
 *   per head: its top floor(alpha * X) scored slots are kept (the safeguard)
 *   per layer: the remaining H * X - sum(floors) slots go to the highest scores of ALL heads
 *              (ties: lower head, then lower slot)
 *   every head also keeps its W window tokens
 *
 * Source: Ada-KV (arXiv 2407.11550) and its code (FFY0/AdaKV `AdaptiveSnapKVCluster`: allocation
 * over base_capacity = B - window, floor_alpha 0.2, window added per head); kvpress
 * `presses/adakv_press.py` (the floor applied as "force each head's top alpha share, then one
 * top-k across the layer's heads", which gives exactly H * X scored slots).
 * Budget B (--kv-budget) = tokens kept per head AVERAGED over the layer's heads, window included;
 * B >= L keeps all. Heads end with different lengths.
 * Defaults: alpha 0.2, and SnapKV's window 32, kernel 7, avg pooling, gqa expand (see snapkv.ts).
 * Deviations: AdaKV's own code blends instead, round((1 - alpha) * c_h + alpha * X) with c_h the
 *   head's share of the layer top-k, which can miss H * X by rounding; we take kvpress's form.
 *   AdaKV's code defaults to max pooling; we keep SnapKV's avg so the two differ only in allocation.
 */
import type { MethodEntry } from './method.ts';
import { topK } from './press.ts';
import type { PlanContext } from './press.ts';
import { SnapKV, snapkvConfig, snapkvOptions } from './snapkv.ts';
import type { SnapKVConfig } from './snapkv.ts';

export class AdaKV extends SnapKV {
  override readonly name = 'adakv';
  private readonly alpha: number;

  constructor(cfg: SnapKVConfig, alpha: number) {
    super(cfg);
    this.alpha = alpha;
  }

  override plan(scores: Float32Array[][], _ctx: PlanContext): Int32Array[][] {
    return scores.map((layer) => this.planLayer(layer));
  }

  /** Kept slots per head of one layer. Scores of +inf are window slots (always kept, outside the allocation). */
  planLayer(layer: Float32Array[]): Int32Array[] {
    const x = Math.max(0, this.cfg.budget - this.cfg.window);
    const floorSlots = Math.floor(this.alpha * x);
    const kept = layer.map((s) => new Uint8Array(s.length));
    let scored = 0;
    const windowCount = layer.map((s) => {
      let inf = 0;
      for (let j = 0; j < s.length; j++) if (s[j] === Infinity) inf++;
      scored += s.length - inf;
      return inf;
    });
    const total = Math.min(layer.length * x, scored);
    if (total >= scored) return layer.map((s) => Int32Array.from({ length: s.length }, (_, j) => j));

    // Safeguard: window + the head's top floor share.
    let remaining = total;
    for (let h = 0; h < layer.length; h++) {
      const s = layer[h]!;
      const f = Math.min(floorSlots, s.length - windowCount[h]!);
      remaining -= f;
      for (const j of topK(s, windowCount[h]! + f)) kept[h]![j] = 1;
    }

    // One top-`remaining` across the layer's heads: find the threshold with a native sort, then take ties in order.
    const pool = new Float32Array(scored - (total - remaining));
    let p = 0;
    for (let h = 0; h < layer.length; h++) {
      const s = layer[h]!;
      for (let j = 0; j < s.length; j++) if (!kept[h]![j]) pool[p++] = s[j]!;
    }
    if (remaining > 0) {
      pool.sort();
      const threshold = pool[pool.length - remaining]!;
      for (let h = 0; h < layer.length; h++) {
        const s = layer[h]!;
        for (let j = 0; j < s.length; j++) if (!kept[h]![j] && s[j]! > threshold) { kept[h]![j] = 1; remaining--; }
      }
      for (let h = 0; h < layer.length && remaining > 0; h++) {
        const s = layer[h]!;
        for (let j = 0; j < s.length && remaining > 0; j++) if (!kept[h]![j] && s[j] === threshold) { kept[h]![j] = 1; remaining--; }
      }
    }
    return kept.map((k) => {
      const out: number[] = [];
      for (let j = 0; j < k.length; j++) if (k[j]) out.push(j);
      return Int32Array.from(out);
    });
  }
}

export const adakvEntry: MethodEntry = {
  name: 'adakv',
  summary: 'Ada-KV (Ada-SnapKV): SnapKV scores with one top-k across the heads of a layer and a per-head floor',
  options: {
    ...snapkvOptions,
    alpha: { type: 'number', default: 0.2, min: 0, max: 1, help: 'share of the per-head budget every head keeps regardless (safeguard)' },
  },
  create: (ctx, opts) => ({ eviction: new AdaKV(snapkvConfig('adakv', ctx.budget, opts), opts['alpha'] as number) }),
};

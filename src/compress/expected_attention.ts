/**
 * expected_attention: keep the KVs that future queries are expected to attend to, modelling those
 * queries from the prompt's own (kvpress's ExpectedAttentionPress, kvpress 0.5.5).
 *
 *   per query head: mean m and covariance C of the prompt's queries BEFORE RoPE, rows n_sink..L-1
 *                   (biased covariance, / (L - n_sink))
 *   R    = the RoPE rotation averaged over the next n_future positions L .. L + n_future - 1
 *   m' = R m,  C' = R C R^T
 *   z_j  = m'.k_j / sqrt(d) + k_j^T C' k_j / (2 d)        keys post-RoPE, slots at positions >= n_sink
 *   p    = softmax_j(z) per query head, averaged over the G query heads of the KV head
 *   s_j  = (p_j + epsilon) * ||v_j||_2                    (use_vnorm; without it s_j = p_j)
 *   sink slots (positions < n_sink) score max(s over the layer) + 1, so they are kept
 *   keep per KV head: top-B of s (ties: lower slot first)
 *
 * Defaults are kvpress's: n_future_positions 512, n_sink 4, use_covariance true, use_vnorm true,
 * epsilon 0. Budget B (--kv-budget) = tokens kept per KV head; kvpress takes a compression ratio
 * and keeps int(L * (1 - ratio)) per head, the same rule at B = that count. Applied once at the
 * end of the prompt's prefill; decode tokens are appended.
 * Deviation: the future positions start at the tokens the sequence has seen (for a first turn that
 * is kvpress's q_len; in a later turn kvpress would count from the turn's own length).
 */
import type { MethodContext, MethodEntry, OptionValues } from './method.ts';
import type { LayerView, PlanContext } from './press.ts';
import { TopKScorer } from './scorer.ts';
import { averageRotation, rotate, rotateCov } from './query-stats.ts';
import { UsageError } from '../errors.ts';

export interface ExpectedAttentionOptions {
  nFuturePositions: number;
  nSink: number;
  useCovariance: boolean;
  useVnorm: boolean;
  epsilon: number;
}

export class ExpectedAttention extends TopKScorer {
  readonly name = 'expected_attention';
  /** Its plan keeps whole layers by index (keepAll). */
  override readonly layerwise: boolean = false;
  /** Pre-RoPE query moments over the prompt, leaving out its first `skip` rows. */
  readonly queryStats: { skip: number };
  private opts: ExpectedAttentionOptions;
  private invFreq: Float32Array;
  /** Layers scored without query statistics: kept whole. */
  private keepAll = new Set<number>();

  constructor(budget: number, invFreq: Float32Array, opts: ExpectedAttentionOptions) {
    super(budget, 0);
    this.opts = opts;
    this.invFreq = invFreq;
    this.queryStats = { skip: opts.nSink };
  }

  score(view: LayerView): Float32Array[] {
    const { shape, group } = view;
    const d = shape.headDim;
    const o = this.opts;
    const moments = view.queryMoments?.();
    if (!moments) {
      // No rows past the sinks to model queries from (e.g. a later turn of at most n_sink tokens): keep everything.
      this.keepAll.add(view.layer);
      return Array.from({ length: view.heads }, (_, h) => new Float32Array(view.length(h)));
    }
    this.keepAll.delete(view.layer);
    if (group * view.heads !== shape.numHeads) throw new Error('expected_attention: the layer is expanded; it scores per KV head');
    const rot = averageRotation(this.invFreq, view.promptLength, o.nFuturePositions);
    const out: Float32Array[] = [];
    let layerMax = -Infinity;
    const sinkSlots: number[][] = [];
    for (let h = 0; h < view.heads; h++) {
      const n = view.length(h);
      const pos = view.positions(h);
      const k = view.keys(h);
      const avg = new Float64Array(n);
      const z = new Float64Array(n);
      for (let g = 0; g < group; g++) {
        const qh = h * group + g;
        const m = rotate(rot, moments.mean, qh * d);
        const c = o.useCovariance ? rotateCov(rot, moments.cov, qh * d * d) : null;
        let zMax = -Infinity;
        for (let j = 0; j < n; j++) {
          if (pos[j]! < o.nSink) continue;
          const ko = j * d;
          let dot = 0;
          for (let i = 0; i < d; i++) dot += m[i]! * k[ko + i]!;
          let v = dot / Math.sqrt(d);
          if (c) {
            let quad = 0;
            for (let i = 0; i < d; i++) {
              let row = 0;
              const ci = i * d;
              for (let t = 0; t < d; t++) row += c[ci + t]! * k[ko + t]!;
              quad += k[ko + i]! * row;
            }
            v += quad / d / 2;
          }
          z[j] = v;
          if (v > zMax) zMax = v;
        }
        let sum = 0;
        for (let j = 0; j < n; j++) {
          if (pos[j]! < o.nSink) continue;
          const e = Math.exp(z[j]! - zMax);
          z[j] = e;
          sum += e;
        }
        for (let j = 0; j < n; j++) if (pos[j]! >= o.nSink) avg[j]! += z[j]! / sum / group;
      }
      const s = new Float32Array(n);
      const vals = o.useVnorm ? view.values(h) : null;
      const sinks: number[] = [];
      for (let j = 0; j < n; j++) {
        if (pos[j]! < o.nSink) { sinks.push(j); continue; }
        let v = avg[j]!;
        if (vals) {
          let sq = 0;
          for (let i = 0; i < d; i++) sq += vals[j * d + i]! * vals[j * d + i]!;
          v = (v + o.epsilon) * Math.sqrt(sq);
        }
        s[j] = v;
        if (v > layerMax) layerMax = v;
      }
      sinkSlots.push(sinks);
      out.push(s);
    }
    const sinkScore = (Number.isFinite(layerMax) ? layerMax : 0) + 1;
    for (let h = 0; h < out.length; h++) for (const j of sinkSlots[h]!) out[h]![j] = sinkScore;
    return out;
  }

  override plan(scores: Float32Array[][], ctx: PlanContext): Int32Array[][] {
    const kept = super.plan(scores, ctx);
    for (const l of this.keepAll) kept[l] = ctx.lengths[l]!.map((n) => Int32Array.from({ length: n }, (_, j) => j));
    return kept;
  }
}

export const expectedAttentionEntry: MethodEntry = {
  name: 'expected_attention',
  summary: "Expected Attention: keep what future queries, modelled from the prompt's query mean and covariance, will attend to (times ||v||)",
  options: {
    n_future_positions: { type: 'int', default: 512, min: 1, help: 'future positions the RoPE rotation is averaged over' },
    n_sink: { type: 'int', default: 4, min: 0, help: 'first positions always kept and left out of the query statistics' },
    use_covariance: { type: 'boolean', default: true, help: 'include the query covariance term k^T C k / 2d' },
    use_vnorm: { type: 'boolean', default: true, help: 'rescale scores by the value norm' },
    epsilon: { type: 'number', default: 0, min: 0, help: 'added to the scores before the value-norm rescaling' },
  },
  create(ctx: MethodContext, opts: OptionValues) {
    if (!ctx.ropeInvFreq) throw new UsageError('expected_attention needs the model\'s RoPE frequencies; it runs through the engine');
    return {
      eviction: new ExpectedAttention(ctx.budget, ctx.ropeInvFreq, {
        nFuturePositions: opts.n_future_positions as number,
        nSink: opts.n_sink as number,
        useCovariance: opts.use_covariance as boolean,
        useVnorm: opts.use_vnorm as boolean,
        epsilon: opts.epsilon as number,
      }),
    };
  },
};

/**
 * The two kinds of compression method and what they see. Methods never touch block tables:
 * they read scores, keys and positions through these views and return slot lists; the session
 * (session.ts) applies them to the store.
 */
import type { PageSummary } from '../kv/summary.ts';
import type { Runtime } from '../runtime/wasm.ts';

export interface ModelShape {
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
}

/** One layer at the end of prefill, as an eviction method sees it. */
export interface LayerView {
  layer: number;
  shape: ModelShape;
  /** Stored heads in this layer: numKvHeads, or numHeads if the layer was expanded. */
  heads: number;
  /** Query heads that read one stored head: numHeads/numKvHeads, or 1 if expanded. */
  group: number;
  /** Prompt tokens (all slots are still present at prefill end). */
  promptLength: number;
  length(h: number): number;
  /** Original token position of each slot of head h. */
  positions(h: number): Int32Array;
  /** K rows of head h, [length, headDim] (post-RoPE). */
  keys(h: number): Float32Array;
  /** Queries of the last `windowRows` prompt tokens, post-RoPE, [windowRows, numHeads * headDim]. */
  windowQueries: Float32Array;
  windowRows: number;
  /**
   * softmax(q k^T / sqrt(d)) of the last `w` window queries (w <= windowRows) of the group's query
   * heads over head h's slots, causal by position: [group, w, length], row-major.
   */
  windowProbs(h: number, w: number): Float32Array;
  /** V rows of head h, [length, headDim]. */
  values(h: number): Float32Array;
  /**
   * Moments of the prompt's pre-RoPE queries (methods that declare `queryStats`): mean
   * [numHeads * headDim] and covariance [numHeads, headDim, headDim]; null if none were counted.
   */
  queryMoments?(): { mean: Float64Array; cov: Float64Array } | null;
}

/** What `plan` needs besides the scores. */
export interface PlanContext {
  shape: ModelShape;
  /** The method's budget in tokens (its meaning is the method's: per head, average, ...). */
  budget: number;
  blockSlots: number;
  /** lengths[layer][h]: slots held by each stored head. */
  lengths: number[][];
  /** positions[layer][h]: original position of every slot. */
  positions: Int32Array[][];
  /** Tokens the sequence has seen (prompt + generated so far). */
  tokensSeen: number;
}

export interface EvictionMethod {
  readonly name: string;
  /** Prompt queries per layer to keep for scoring (the observation window). */
  readonly windowSize: number;
  /** Give each query head its own copy of its KV head before scoring (original SnapKV on GQA). */
  readonly expandGqa: boolean;
  /** Evict only when the prompt is longer than this (e.g. SnapKV++'s prompt budget); 0 = always. */
  readonly minLengthToEvict: number;
  /**
   * True when the plan of a layer depends on that layer's scores alone: the session may then evict
   * each layer as soon as it has seen the whole prompt (layer-by-layer prefill), with the same result.
   */
  readonly layerwise?: boolean;
  /**
   * For memory forecasts: the average slots a stored head keeps right after eviction, given the
   * request's budget (absent: unknown, forecast as no saving).
   */
  keptPerHead?(budget: number, blockSlots: number): number;
  /** Present when the method scores from the prompt's pre-RoPE query moments (rows from `skip` on). */
  readonly queryStats?: { skip: number };
  /** Per stored head of the layer: one score per slot (higher = keep). */
  score(view: LayerView): Float32Array[];
  /** From every layer's scores, the slots to keep per [layer][head], ascending. */
  plan(scores: Float32Array[][], ctx: PlanContext): Int32Array[][];
  /** Continual methods: one decode step's attention probabilities of stored head h, [group, length]. */
  observeDecode?(layer: number, h: number, probs: Float32Array, group: number): void;
  /** Continual methods: after a decode step, the slots to keep per [layer][head] if evicting now, else null. */
  evictAfterStep?(ctx: PlanContext): Int32Array[][] | null;
  /** Slots of (layer, h) were compacted to `keep`: reorder any per-slot state the same way. */
  onCompact?(layer: number, h: number, keep: Int32Array): void;
}

/** One stored head at one decode step, as a decode-time selector sees it. */
export interface SelectView {
  layer: number;
  h: number;
  /** Query heads of this step that read the head ([group, headDim] in `q`). */
  group: number;
  headDim: number;
  /** This step's queries of the group, post-RoPE, [group, headDim]. */
  q: Float32Array;
  length: number;
  positions: Int32Array;
  /** Per-page key min/max, present when the selector declared `summaryPage`. */
  summary: PageSummary | null;
  /** K rows of the head, [length, headDim]. Reading them costs: declare it with `countRead`. */
  keys(): Float32Array;
  /** Record bytes the selection itself read (beyond the selected slots' K and V). */
  countRead(kBytes: number, summaryBytes: number): void;
  /** The kernels, for selectors with a wasm path (absent in unit tests over dense arrays). */
  runtime?: Runtime;
}

export interface DecodeSelector {
  readonly name: string;
  /** Page size of the key summaries it reads; 0 when it needs none. */
  readonly summaryPage: number;
  /** Slots of the head (ascending) this step's attention reads, or null for all of them. */
  select(view: SelectView): Selection;
  /** The same for several heads at once (e.g. one kernel call spread over threads); equal to `select` on each. */
  selectMany?(views: readonly SelectView[]): Selection[];
}

/**
 * What one stored head reads at a decode step: null = every slot; one ascending slot list shared by
 * the group's query heads; or one list per query head of the group (length = group), as an oracle
 * that gives each query head its own top-k does.
 */
export type Selection = Int32Array | Int32Array[] | null;

/** Ascending indices of the k largest values (ties to the lower index). */
export function topK(scores: ArrayLike<number>, k: number): Int32Array {
  const n = scores.length;
  if (k >= n) return Int32Array.from({ length: n }, (_, i) => i);
  if (k <= 0) return new Int32Array(0);
  const idx = Int32Array.from({ length: n }, (_, i) => i);
  idx.sort((a, b) => (scores[b]! - scores[a]!) || a - b);
  return idx.subarray(0, k).sort();
}

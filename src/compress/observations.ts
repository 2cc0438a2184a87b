/**
 * What a compression session observes of the forward pass: the observation window (the prompt's
 * last query rows per layer), pre-RoPE query moments for methods that model queries, and each
 * decode step's queries for continual methods.
 */
import type { CompressionParts } from './method.ts';
import type { ModelShape } from './press.ts';
import { QueryStats } from './query-stats.ts';

export class Observations {
  readonly window: number;
  /** Last `window` prompt query rows per layer. */
  readonly win: QueryWindow;
  /** Pre-RoPE query moments of the prompt, for methods that declare `queryStats`. */
  readonly stats: QueryStats | null;
  /** This decode step's query row per layer (continual methods observe the step's attention). */
  readonly stepQ: Float32Array[] = [];
  /** True once the prompt has run (queries are then decode steps'). */
  decoding = false;
  private readonly qDim: number;
  private readonly keepStepQueries: boolean;

  constructor(parts: CompressionParts, shape: ModelShape) {
    this.window = parts.eviction?.windowSize ?? 0;
    this.qDim = shape.numHeads * shape.headDim;
    this.win = new QueryWindow(this.window, this.qDim);
    const qs = parts.eviction?.queryStats;
    this.stats = qs ? new QueryStats(qs.skip, shape.numHeads, shape.headDim) : null;
    this.keepStepQueries = !!parts.eviction?.observeDecode;
  }

  onQueries(layer: number, q: Float32Array, T: number): void {
    if (this.decoding) {
      if (this.keepStepQueries) this.stepQ[layer] = q.slice(0, this.qDim);
      return;
    }
    this.win.onQueries(layer, q, T);
  }

  onPreRopeQueries(layer: number, q: Float32Array, T: number): void {
    if (!this.decoding) this.stats?.onPreRopeQueries(layer, q, T);
  }

  /**
   * Start from a prompt prefilled elsewhere (engine.prefill): take the last rows of its window as
   * if these observations had watched that prefill. The recorded window must be at least this one.
   */
  adopt(recorded: QueryWindow, stats: QueryStats | null): void {
    if (this.window > recorded.size) {
      throw new RangeError(`the prefilled prompt kept ${recorded.size} query rows, this method needs ${this.window}; prefill with a larger window`);
    }
    this.win.copyFrom(recorded);
    if (this.stats) {
      if (!stats) throw new RangeError('the prefilled prompt kept no query statistics, this method needs them; prefill with queryStats');
      this.stats.copyFrom(stats);
    }
  }

  /** A new turn's prompt follows: capture its observation window again. */
  beginTurn(): void {
    this.decoding = false;
    this.drop();
  }

  /** The prompt's observations are spent once it is compressed (a later turn gathers its own). */
  drop(): void {
    this.win.clear();
    this.stats?.clear();
  }
}

/**
 * The last `size` query rows of every layer's prompt (after RoPE), [rows, numHeads * headDim]: the
 * observation window that eviction methods score from.
 */
export class QueryWindow {
  readonly size: number;
  private qDim: number;
  private buf: Float32Array[] = [];
  private rows: number[] = [];

  constructor(size: number, qDim: number) {
    this.size = size;
    this.qDim = qDim;
  }

  onQueries(layer: number, q: Float32Array, T: number): void {
    const W = this.size;
    if (W === 0) return;
    const qDim = this.qDim;
    const buf = (this.buf[layer] ??= new Float32Array(W * qDim));
    const have = this.rows[layer] ?? 0;
    if (T >= W) {
      buf.set(q.subarray((T - W) * qDim, T * qDim));
      this.rows[layer] = W;
    } else {
      const keep = Math.min(have, W - T);
      buf.copyWithin(0, (have - keep) * qDim, have * qDim);
      buf.set(q.subarray(0, T * qDim), keep * qDim);
      this.rows[layer] = keep + T;
    }
  }

  rowsIn(layer: number): number {
    return this.rows[layer] ?? 0;
  }

  /** The kept rows of a layer, oldest first (a view). */
  queries(layer: number): Float32Array {
    return (this.buf[layer] ?? new Float32Array(0)).subarray(0, this.rowsIn(layer) * this.qDim);
  }

  /** Keep the last rows of another window, as many as this one holds. */
  copyFrom(other: QueryWindow): void {
    if (other.qDim !== this.qDim) throw new RangeError(`query rows of ${other.qDim} floats, this window holds ${this.qDim}`);
    this.clear();
    for (let l = 0; l < other.buf.length; l++) {
      const n = other.rowsIn(l);
      if (n === 0) continue;
      const q = other.queries(l);
      this.onQueries(l, q, n);
    }
  }

  clear(): void {
    this.buf = [];
    this.rows = [];
  }
}

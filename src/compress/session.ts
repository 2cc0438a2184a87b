import type { SequenceKV } from '../kv/store.ts';
import type { ForwardHooks } from '../model/llama.ts';
import type { CompressionParts } from './method.ts';
import type { LayerView, ModelShape, PlanContext, Selection, SelectView } from './press.ts';
import { attentionProbs } from './probs.ts';
import { PageSummary } from '../kv/summary.ts';
import { QueryStats } from './query-stats.ts';

/**
 * Applies one request's compression method to its sequence: keeps the observation window of
 * prompt queries, evicts at the end of prefill (and during decode for continual methods), and
 * picks the slots each decode step reads. The store does the moving; the method decides what.
 */
export class CompressionSession implements ForwardHooks {
  readonly parts: CompressionParts;
  private seq: SequenceKV;
  private shape: ModelShape;
  private budget: number;
  private window: number;
  /** Last `window` prompt query rows per layer. */
  private win: QueryWindow;
  /** Pre-RoPE query moments of the prompt, for methods that declare `queryStats`. */
  private stats: QueryStats | null;
  /** This decode step's query row per layer (continual methods observe the step's attention). */
  private stepQ: Float32Array[] = [];
  private decoding = false;
  /** View mode: per [layer][head], the slots decode reads (null: all), plus their key summaries. */
  private views: (Int32Array | null)[][] = [];
  private viewSummaries: (PageSummary | null)[][] = [];
  evictions = 0;
  /** Set by `evictLayerwise`: each layer is evicted as soon as a layer-by-layer prefill finishes it. */
  private layerwiseOn = false;
  private layersEvicted = new Set<number>();

  constructor(seq: SequenceKV, parts: CompressionParts, shape: ModelShape, budget: number) {
    this.seq = seq;
    this.parts = parts;
    this.shape = shape;
    this.budget = budget;
    this.window = parts.eviction?.windowSize ?? 0;
    this.win = new QueryWindow(this.window, shape.numHeads * shape.headDim);
    const qs = parts.eviction?.queryStats;
    this.stats = qs ? new QueryStats(qs.skip, shape.numHeads, shape.headDim) : null;
    if (this.stats) this.onPreRopeQueries = (layer, q, T) => { if (!this.decoding) this.stats!.onPreRopeQueries(layer, q, T); };
    if (parts.selector && parts.selector.summaryPage > 0) seq.enableSummaries(parts.selector.summaryPage);
  }

  private get qDim(): number {
    return this.shape.numHeads * this.shape.headDim;
  }

  /** Set only when the method needs pre-RoPE query statistics (the forward pass skips the hook otherwise). */
  onPreRopeQueries?: (layer: number, q: Float32Array, T: number) => void;

  onQueries(layer: number, q: Float32Array, T: number): void {
    const qDim = this.qDim;
    if (this.decoding) {
      if (this.parts.eviction?.observeDecode) this.stepQ[layer] = q.slice(0, qDim);
      return;
    }
    this.win.onQueries(layer, q, T);
  }

  /**
   * Start from a prompt prefilled elsewhere (engine.prefill): take the last rows of its window as
   * if this session had watched that prefill. The recorded window must be at least this method's.
   */
  adoptWindow(recorded: QueryWindow, stats: QueryStats | null = null): void {
    if (this.window > recorded.size) {
      throw new RangeError(`the prefilled prompt kept ${recorded.size} query rows, this method needs ${this.window}; prefill with a larger window`);
    }
    this.win.copyFrom(recorded);
    if (this.stats) {
      if (!stats) throw new RangeError('the prefilled prompt kept no query statistics, this method needs them; prefill with queryStats');
      this.stats.copyFrom(stats);
    }
  }

  select(layer: number, h: number, q: Float32Array, group: number): Selection {
    const filtered = this.views[layer]?.[h];
    if (filtered) return this.selectInView(layer, h, q, group, this.extendView(layer, h, filtered));
    const selector = this.parts.selector;
    if (!selector) return null;
    const seq = this.seq;
    const head = seq.headsIn(layer)[h]!;
    const d = this.shape.headDim;
    const view: SelectView = {
      layer,
      h,
      group,
      headDim: d,
      q,
      length: head.length,
      positions: head.positions.subarray(0, head.length),
      summary: head.summary,
      keys: () => seq.readKeys(layer, h),
      countRead: (kBytes, summaryBytes) => {
        seq.reads.kBytes += kBytes;
        seq.reads.summaryBytes += summaryBytes;
      },
      runtime: seq.runtime,
    };
    return selector.select(view);
  }

  /** View mode: the selector sees only the view's slots; its picks map back to store slots. */
  private selectInView(layer: number, h: number, q: Float32Array, group: number, slots: Int32Array): Int32Array | Int32Array[] {
    const selector = this.parts.selector;
    if (!selector) return slots;
    const seq = this.seq;
    const head = seq.headsIn(layer)[h]!;
    const d = this.shape.headDim;
    const positions = new Int32Array(slots.length);
    for (let i = 0; i < slots.length; i++) positions[i] = head.positions[slots[i]!]!;
    const picked = selector.select({
      layer,
      h,
      group,
      headDim: d,
      q,
      length: slots.length,
      positions,
      summary: this.viewSummaries[layer]?.[h] ?? null,
      keys: () => gatherRows(seq.readKeys(layer, h), slots, d),
      countRead: (kBytes, summaryBytes) => {
        seq.reads.kBytes += kBytes;
        seq.reads.summaryBytes += summaryBytes;
      },
      runtime: seq.runtime,
    });
    if (!picked) return slots;
    const toStore = (p: Int32Array): Int32Array => {
      const out = new Int32Array(p.length);
      for (let i = 0; i < p.length; i++) out[i] = slots[p[i]!]!;
      return out;
    };
    return Array.isArray(picked) ? picked.map(toStore) : toStore(picked);
  }

  /** View mode: tokens appended after the view was made (this step's included) join it. */
  private extendView(layer: number, h: number, v: Int32Array): Int32Array {
    const head = this.seq.headsIn(layer)[h]!;
    const last = v.length ? v[v.length - 1]! : -1;
    if (last >= head.length - 1) return v;
    const added = head.length - 1 - last;
    const grown = new Int32Array(v.length + added);
    grown.set(v);
    for (let i = 0; i < added; i++) grown[v.length + i] = last + 1 + i;
    const summary = this.viewSummaries[layer]?.[h];
    if (summary) {
      const keys = this.seq.readKeyRange(layer, h, last + 1, head.length);
      for (let i = 0; i < added; i++) summary.add(v.length + i, keys, i * this.shape.headDim);
    }
    this.views[layer]![h] = grown;
    return grown;
  }

  /** A new turn's prompt follows: capture its observation window again. */
  beginTurn(): void {
    this.decoding = false;
    this.win.clear();
    this.stats?.clear();
  }

  /**
   * Whether this method can evict a prompt of `promptLength` tokens layer by layer (its plan per
   * layer alone, the cache evicted rather than viewed); if so, and `enable`, from now on each layer
   * is evicted when a layer-by-layer prefill reports it done (onLayerPrefilled).
   */
  evictLayerwise(promptLength: number, enable: boolean): boolean {
    const ev = this.parts.eviction;
    const ok = !!ev?.layerwise && this.parts.mode !== 'view' && promptLength > ev.minLengthToEvict;
    if (ok && enable) this.layerwiseOn = true;
    return ok;
  }

  onLayerPrefilled(layer: number, promptLength: number): void {
    if (!this.layerwiseOn || this.layersEvicted.has(layer)) return;
    const ev = this.parts.eviction!;
    if (ev.expandGqa) this.seq.expandLayer(layer, this.shape.numHeads / this.shape.numKvHeads);
    const plan = ev.plan([ev.score(this.layerView(layer, promptLength))], this.planContext([layer], promptLength));
    this.applyLayer(layer, plan[0]!);
    this.layersEvicted.add(layer);
  }

  private planContext(layers?: number[], tokensSeen?: number): PlanContext {
    const seq = this.seq;
    const lengths: number[][] = [];
    const positions: Int32Array[][] = [];
    for (const l of layers ?? Array.from({ length: seq.layers }, (_, i) => i)) {
      lengths.push(seq.headsIn(l).map((hd) => hd.length));
      positions.push(seq.headsIn(l).map((hd) => hd.positions.subarray(0, hd.length)));
    }
    return { shape: this.shape, budget: this.budget, blockSlots: seq.pool.blockSlots, lengths, positions, tokensSeen: tokensSeen ?? seq.nextPosition };
  }

  /** The layer at the end of a prefill; `promptLength` = tokens seen so far (all turns). */
  private layerView(layer: number, promptLength: number): LayerView {
    const seq = this.seq;
    const shape = this.shape;
    const d = shape.headDim;
    const qDim = this.qDim;
    const heads = seq.headsIn(layer);
    const group = seq.isExpanded(layer) ? 1 : shape.numHeads / shape.numKvHeads;
    const rows = this.win.rowsIn(layer);
    const windowQueries = this.win.queries(layer);
    const keysCache = new Map<number, Float32Array>();
    const keys = (h: number): Float32Array => {
      let k = keysCache.get(h);
      if (!k) { k = seq.readKeys(layer, h); keysCache.set(h, k); }
      return k;
    };
    return {
      layer,
      shape,
      heads: heads.length,
      group,
      promptLength,
      length: (h) => heads[h]!.length,
      positions: (h) => heads[h]!.positions.subarray(0, heads[h]!.length),
      keys,
      windowQueries,
      windowRows: rows,
      values: (h) => seq.readValues(layer, h),
      queryMoments: () => this.stats?.moments(layer) ?? null,
      windowProbs: (h, w) => {
        if (w > rows) throw new RangeError(`window of ${w} queries asked, ${rows} kept`);
        const offsets: number[] = [];
        const qPos: number[] = [];
        for (let g = 0; g < group; g++) {
          for (let r = rows - w; r < rows; r++) {
            offsets.push(r * qDim + (h * group + g) * d);
            qPos.push(promptLength - rows + r);
          }
        }
        const head = heads[h]!;
        return attentionProbs(seq.runtime, windowQueries, offsets, qPos, keys(h), head.positions, head.length, d);
      },
    };
  }

  /** Evict once, at the end of prefill, if the method has an eviction stage. */
  afterPrefill(promptLength: number, skipEviction = false): void {
    this.decoding = true;
    const ev = this.parts.eviction;
    const seq = this.seq;
    promptLength = seq.nextPosition;
    if (skipEviction) { this.dropObservations(); return; }
    this.views = [];
    this.viewSummaries = [];
    if (!ev || promptLength <= ev.minLengthToEvict) { this.dropObservations(); return; }
    if (this.layerwiseOn) {
      // Evicted layer by layer during the prefill: whatever layer was not (none, normally) goes now.
      for (let l = 0; l < seq.layers; l++) this.onLayerPrefilled(l, promptLength);
      this.layerwiseOn = false;
      this.layersEvicted.clear();
      this.evictions++;
      this.dropObservations();
      return;
    }
    const group = this.shape.numHeads / this.shape.numKvHeads;
    if (ev.expandGqa) for (let l = 0; l < seq.layers; l++) seq.expandLayer(l, group);
    const scores: Float32Array[][] = [];
    for (let l = 0; l < seq.layers; l++) scores.push(ev.score(this.layerView(l, promptLength)));
    const plan = ev.plan(scores, this.planContext());
    if (this.parts.mode === 'view') this.makeViews(plan);
    else this.apply(plan);
    this.dropObservations();
  }

  /** The prompt's observations are spent once it is compressed (a later turn gathers its own). */
  private dropObservations(): void {
    this.win.clear();
    this.stats?.clear();
  }

  private makeViews(plan: Int32Array[][]): void {
    const seq = this.seq;
    const d = this.shape.headDim;
    const page = this.parts.selector?.summaryPage ?? 0;
    this.evictions++;
    for (let l = 0; l < seq.layers; l++) {
      const heads = seq.headsIn(l);
      this.views.push(heads.map((hd, h) => (plan[l]![h]!.length === hd.length ? null : plan[l]![h]!)));
      this.viewSummaries.push(heads.map((_, h) => {
        const v = this.views[l]![h];
        if (!v || page === 0) return null;
        const s = new PageSummary(page, d);
        s.rebuild(gatherRows(seq.readKeys(l, h), v, d), v.length);
        return s;
      }));
    }
  }

  /** After a decode step: feed continual methods the step's attention, and evict if they say so. */
  afterDecodeStep(): void {
    const ev = this.parts.eviction;
    if (!ev?.observeDecode) return;
    const seq = this.seq;
    const d = this.shape.headDim;
    for (let l = 0; l < seq.layers; l++) {
      const q = this.stepQ[l];
      if (!q) continue;
      const heads = seq.headsIn(l);
      const group = seq.isExpanded(l) ? 1 : this.shape.numHeads / this.shape.numKvHeads;
      for (let h = 0; h < heads.length; h++) {
        const head = heads[h]!;
        const offsets = Array.from({ length: group }, (_, g) => (h * group + g) * d);
        const qPos = new Array<number>(group).fill(seq.nextPosition - 1);
        const probs = attentionProbs(seq.runtime, q, offsets, qPos, seq.readKeys(l, h), head.positions, head.length, d);
        ev.observeDecode(l, h, probs, group);
      }
    }
    const kept = ev.evictAfterStep?.(this.planContext());
    if (kept) this.apply(kept);
  }

  private apply(kept: Int32Array[][]): void {
    this.evictions++;
    for (let l = 0; l < this.seq.layers; l++) this.applyLayer(l, kept[l]);
  }

  private applyLayer(l: number, kept: Int32Array[] | undefined): void {
    const ev = this.parts.eviction!;
    const heads = this.seq.headsIn(l);
    for (let h = 0; h < heads.length; h++) {
      const keep = kept?.[h];
      if (!keep) throw new Error(`${ev.name}: plan returned no slots for layer ${l} head ${h}`);
      if (keep.length === heads[h]!.length) continue;
      this.seq.compact(l, h, keep);
      ev.onCompact?.(l, h, keep);
    }
  }
}

/** Rows `slots` of a [n, d] array, in order. */
function gatherRows(rows: Float32Array, slots: Int32Array, d: number): Float32Array {
  const out = new Float32Array(slots.length * d);
  for (let i = 0; i < slots.length; i++) out.set(rows.subarray(slots[i]! * d, slots[i]! * d + d), i * d);
  return out;
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

/**
 * The selection driver of a compression session: asks the method's decode-time selector which
 * slots each stored head reads at a decode step, and keeps the per-turn views of methods that
 * filter instead of evicting (RocketKV-MT: the store keeps everything, decode reads through a view).
 */
import type { SequenceKV } from '../kv/store.ts';
import type { CompressionParts } from './method.ts';
import type { ModelShape, Selection, SelectView } from './press.ts';
import { PageSummary } from '../kv/summary.ts';

export class SelectionDriver {
  private readonly seq: SequenceKV;
  private readonly parts: CompressionParts;
  private readonly shape: ModelShape;
  /** View mode: per [layer][head], the slots decode reads (null: all), plus their key summaries. */
  private views: (Int32Array | null)[][] = [];
  private viewSummaries: (PageSummary | null)[][] = [];

  constructor(seq: SequenceKV, parts: CompressionParts, shape: ModelShape) {
    this.seq = seq;
    this.parts = parts;
    this.shape = shape;
    if (parts.selector && parts.selector.summaryPage > 0) seq.enableSummaries(parts.selector.summaryPage);
  }

  /** A new prefill's plan replaces the views (none until it is made). */
  clearViews(): void {
    this.views = [];
    this.viewSummaries = [];
  }

  select(layer: number, h: number, q: Float32Array, group: number): Selection {
    const filtered = this.views[layer]?.[h];
    if (filtered) return this.selectInView(layer, h, q, group, this.extendView(layer, h, filtered));
    const selector = this.parts.selector;
    if (!selector) return null;
    return selector.select(this.headView(layer, h, q, group));
  }

  /** Every stored head of a layer (`qs[h]`: head h's group of queries): in one call where the selector takes several. */
  selectHeads(layer: number, qs: Float32Array[], group: number): Selection[] {
    const selector = this.parts.selector;
    if (!selector?.selectMany || this.views[layer]?.some((v) => v)) return qs.map((q, h) => this.select(layer, h, q, group));
    return selector.selectMany(qs.map((q, h) => this.headView(layer, h, q, group)));
  }

  private headView(layer: number, h: number, q: Float32Array, group: number): SelectView {
    const seq = this.seq;
    const head = seq.headsIn(layer)[h]!;
    return {
      layer,
      h,
      group,
      headDim: this.shape.headDim,
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

  /** View mode: the eviction plan becomes the slots decode reads until the next prefill. */
  makeViews(plan: Int32Array[][]): void {
    const seq = this.seq;
    const d = this.shape.headDim;
    const page = this.parts.selector?.summaryPage ?? 0;
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
}

/** Rows `slots` of a [n, d] array, in order. */
function gatherRows(rows: Float32Array, slots: Int32Array, d: number): Float32Array {
  const out = new Float32Array(slots.length * d);
  for (let i = 0; i < slots.length; i++) out.set(rows.subarray(slots[i]! * d, slots[i]! * d + d), i * d);
  return out;
}


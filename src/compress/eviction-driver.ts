/**
 * The eviction driver of a compression session: runs the method's eviction stage at the end of a
 * prefill (all layers at once, or each layer as a layer-by-layer prefill finishes it), feeds
 * continual methods each decode step's attention and evicts when they say so, and applies plans
 * to the store (which moves the slots and frees the blocks).
 */
import type { SequenceKV } from '../kv/store.ts';
import type { CompressionParts } from './method.ts';
import type { LayerView, ModelShape, PlanContext } from './press.ts';
import { attentionProbs } from './probs.ts';
import type { Observations } from './observations.ts';
import type { SelectionDriver } from './selection-driver.ts';

export class EvictionDriver {
  private readonly seq: SequenceKV;
  private readonly parts: CompressionParts;
  private readonly shape: ModelShape;
  private readonly budget: number;
  private readonly obs: Observations;
  private readonly selection: SelectionDriver;
  evictions = 0;
  /** Set by `evictLayerwise`: each layer is evicted as soon as a layer-by-layer prefill finishes it. */
  private layerwiseOn = false;
  private layersEvicted = new Set<number>();

  constructor(seq: SequenceKV, parts: CompressionParts, shape: ModelShape, budget: number, obs: Observations, selection: SelectionDriver) {
    this.seq = seq;
    this.parts = parts;
    this.shape = shape;
    this.budget = budget;
    this.obs = obs;
    this.selection = selection;
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
    const qDim = shape.numHeads * d;
    const heads = seq.headsIn(layer);
    const group = seq.isExpanded(layer) ? 1 : shape.numHeads / shape.numKvHeads;
    const rows = this.obs.win.rowsIn(layer);
    const windowQueries = this.obs.win.queries(layer);
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
      queryMoments: () => this.obs.stats?.moments(layer) ?? null,
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
    this.obs.decoding = true;
    const ev = this.parts.eviction;
    const seq = this.seq;
    promptLength = seq.nextPosition;
    if (skipEviction) { this.obs.drop(); return; }
    this.selection.clearViews();
    if (!ev || promptLength <= ev.minLengthToEvict) { this.obs.drop(); return; }
    if (this.layerwiseOn) {
      // Evicted layer by layer during the prefill: whatever layer was not (none, normally) goes now.
      for (let l = 0; l < seq.layers; l++) this.onLayerPrefilled(l, promptLength);
      this.layerwiseOn = false;
      this.layersEvicted.clear();
      this.evictions++;
      this.obs.drop();
      return;
    }
    const group = this.shape.numHeads / this.shape.numKvHeads;
    if (ev.expandGqa) for (let l = 0; l < seq.layers; l++) seq.expandLayer(l, group);
    const scores: Float32Array[][] = [];
    for (let l = 0; l < seq.layers; l++) scores.push(ev.score(this.layerView(l, promptLength)));
    const plan = ev.plan(scores, this.planContext());
    if (this.parts.mode === 'view') { this.evictions++; this.selection.makeViews(plan); } else this.apply(plan);
    this.obs.drop();
  }

  /** After a decode step: feed continual methods the step's attention, and evict if they say so. */
  afterDecodeStep(): void {
    const ev = this.parts.eviction;
    if (!ev?.observeDecode) return;
    const seq = this.seq;
    const d = this.shape.headDim;
    for (let l = 0; l < seq.layers; l++) {
      const q = this.obs.stepQ[l];
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

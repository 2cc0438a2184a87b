import type { SequenceKV } from '../kv/store.ts';
import type { ForwardHooks } from '../model/llama.ts';
import type { CompressionParts } from './method.ts';
import type { ModelShape, Selection } from './press.ts';
import type { QueryStats } from './query-stats.ts';
import { Observations, QueryWindow } from './observations.ts';
import { EvictionDriver } from './eviction-driver.ts';
import { SelectionDriver } from './selection-driver.ts';

export { QueryWindow };

/**
 * Applies one request's compression method to its sequence, as the forward pass's hooks. Three
 * jobs, one part each: what the forward pass shows of the queries (observations.ts), the eviction
 * stage and continual eviction (eviction-driver.ts), and per-step selection (selection-driver.ts).
 * The store does the moving; the method decides what.
 */
export class CompressionSession implements ForwardHooks {
  readonly parts: CompressionParts;
  private readonly obs: Observations;
  private readonly eviction: EvictionDriver;
  private readonly selection: SelectionDriver;

  constructor(seq: SequenceKV, parts: CompressionParts, shape: ModelShape, budget: number) {
    this.parts = parts;
    this.obs = new Observations(parts, shape);
    this.selection = new SelectionDriver(seq, parts, shape);
    this.eviction = new EvictionDriver(seq, parts, shape, budget, this.obs, this.selection);
    if (this.obs.stats) this.onPreRopeQueries = (layer, q, T) => this.obs.onPreRopeQueries(layer, q, T);
  }

  /** Eviction passes so far (prefill end, layer-by-layer counted once, continual). */
  get evictions(): number { return this.eviction.evictions; }

  /** Set only when the method needs pre-RoPE query statistics (the forward pass skips the hook otherwise). */
  onPreRopeQueries?: (layer: number, q: Float32Array, T: number) => void;

  onQueries(layer: number, q: Float32Array, T: number): void {
    this.obs.onQueries(layer, q, T);
  }

  select(layer: number, h: number, q: Float32Array, group: number): Selection {
    return this.selection.select(layer, h, q, group);
  }

  selectHeads(layer: number, qs: Float32Array[], group: number): Selection[] {
    return this.selection.selectHeads(layer, qs, group);
  }

  onLayerPrefilled(layer: number, promptLength: number): void {
    this.eviction.onLayerPrefilled(layer, promptLength);
  }

  /**
   * Start from a prompt prefilled elsewhere (engine.prefill): take the last rows of its window as
   * if this session had watched that prefill. The recorded window must be at least this method's.
   */
  adoptWindow(recorded: QueryWindow, stats: QueryStats | null = null): void {
    this.obs.adopt(recorded, stats);
  }

  /** A new turn's prompt follows: capture its observation window again. */
  beginTurn(): void {
    this.obs.beginTurn();
  }

  /** See EvictionDriver.evictLayerwise. */
  evictLayerwise(promptLength: number, enable: boolean): boolean {
    return this.eviction.evictLayerwise(promptLength, enable);
  }

  /** Evict once, at the end of prefill, if the method has an eviction stage. */
  afterPrefill(promptLength: number, skipEviction = false): void {
    this.eviction.afterPrefill(promptLength, skipEviction);
  }

  /** After a decode step: feed continual methods the step's attention, and evict if they say so. */
  afterDecodeStep(): void {
    this.eviction.afterDecodeStep();
  }
}

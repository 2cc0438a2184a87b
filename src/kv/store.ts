import type { Runtime } from '../runtime/wasm.ts';
import type { BlockPool } from './pool.ts';
import { PageSummary } from './summary.ts';
import { ContextLengthError } from '../errors.ts';

/**
 * The KV of one (sequence, layer, KV head): a block table in wasm memory (the attention kernel
 * reads it), a length in slots, and the original token position of every slot. Heads of one
 * sequence may hold different numbers of slots once a compression method has evicted.
 */
export class HeadKV {
  /** Byte offset of the i32 block table in wasm memory. */
  readonly tablePtr: number;
  readonly maxBlocks: number;
  blocks = 0;
  length = 0;
  positions: Int32Array;
  /** Per-page key min/max, when a decode-time method asked for them. */
  summary: PageSummary | null = null;

  constructor(rt: Runtime, maxBlocks: number, blockSlots: number) {
    this.maxBlocks = maxBlocks;
    this.tablePtr = rt.alloc(maxBlocks * 4, 16);
    this.positions = new Int32Array(Math.min(maxBlocks, 8) * blockSlots);
  }
}

export interface SequenceKVOptions {
  layers: number;
  kvHeads: number;
  /** Most slots one head may ever hold (the model's context length). */
  maxTokens: number;
}

/** Bytes read by attention and selection during decode, summed over steps. */
export interface ReadStats {
  steps: number;
  kBytes: number;
  vBytes: number;
  summaryBytes: number;
}

/** All heads of one sequence, appended to by the forward pass and compacted by eviction. */
export class SequenceKV {
  readonly layers: number;
  readonly kvHeads: number;
  readonly maxTokens: number;
  /** Heads of each layer: kvHeads of them, or one per query head once a layer is expanded. */
  private layerHeads: HeadKV[][];
  /** Query heads served by one stored head, per layer (the model's GQA group, or 1 if expanded). */
  private groups: number[];
  /** Tokens this sequence has seen: the RoPE position of the next token. */
  nextPosition = 0;
  readonly reads: ReadStats = { steps: 0, kBytes: 0, vBytes: 0, summaryBytes: 0 };
  private rt: Runtime;
  readonly pool: BlockPool;
  private released = false;
  private summaryPage = 0;
  /** Blocks this sequence holds, and the most it has held since `resetPeak`. */
  private held = 0;
  private heldPeak = 0;
  /** Blocks reserved for this sequence's next appends (taken before unreserved ones). */
  private reserved = 0;

  constructor(rt: Runtime, pool: BlockPool, opts: SequenceKVOptions) {
    this.rt = rt;
    this.pool = pool;
    this.layers = opts.layers;
    this.kvHeads = opts.kvHeads;
    this.maxTokens = opts.maxTokens;
    this.layerHeads = [];
    this.groups = [];
    for (let l = 0; l < opts.layers; l++) {
      const hs: HeadKV[] = [];
      for (let h = 0; h < opts.kvHeads; h++) hs.push(this.newHead());
      this.layerHeads.push(hs);
      this.groups.push(0);
    }
  }

  /** A block for this sequence: from its reservation first, else from the pool's free blocks. */
  private takeBlock(): number {
    const id = this.pool.allocate(this.reserved > 0);
    if (this.reserved > 0) this.reserved--;
    if (++this.held > this.heldPeak) this.heldPeak = this.held;
    return id;
  }

  private giveBlock(id: number): void {
    this.pool.release(id);
    this.held--;
  }

  /** Blocks this sequence holds now. */
  get blocksHeld(): number { return this.held; }
  /** The most blocks it held at once since it was made or since `resetPeak`. */
  get peakBlocks(): number { return this.heldPeak; }
  resetPeak(): void { this.heldPeak = this.held; }

  /** New blocks that appending T tokens to every head would take (expanded layers included). */
  blocksToAppend(T: number): number {
    const bs = this.pool.blockSlots;
    let n = 0;
    for (const heads of this.layerHeads) for (const h of heads) n += Math.ceil((h.length + T) / bs) - h.blocks;
    return n;
  }

  /** Reserve n more blocks in the pool for this sequence: all (true) or none (false). */
  tryReserve(n: number): boolean {
    if (!this.pool.reserve(n)) return false;
    this.reserved += n;
    return true;
  }

  /** Give back whatever of the reservation was not taken. */
  dropReservation(): void {
    if (this.reserved > 0) this.pool.unreserve(this.reserved);
    this.reserved = 0;
  }

  /** True once `release` returned the blocks. */
  get isReleased(): boolean { return this.released; }

  private newHead(): HeadKV {
    return new HeadKV(this.rt, Math.ceil(this.maxTokens / this.pool.blockSlots), this.pool.blockSlots);
  }

  head(layer: number, h: number): HeadKV {
    return this.layerHeads[layer]![h]!;
  }

  /** Stored heads of a layer (kvHeads, or query heads once expanded). */
  headsIn(layer: number): HeadKV[] {
    return this.layerHeads[layer]!;
  }

  /** True once `expandLayer` gave every query head of the layer its own copy. */
  isExpanded(layer: number): boolean {
    return this.groups[layer] === 1;
  }

  /** Every stored head of every layer. */
  get heads(): HeadKV[] {
    return this.layerHeads.flat();
  }

  /** The runtime whose memory holds this sequence's blocks. */
  get runtime(): Runtime {
    return this.rt;
  }

  private view(): Float32Array {
    return this.rt.f32(0, this.rt.memory.buffer.byteLength >>> 2);
  }

  /** Float offset of slot `s`'s K row in wasm memory (V is `blockSlots * d` floats further). */
  private slotOffset(table: Int32Array, s: number): number {
    const bs = this.pool.blockSlots;
    return (this.pool.blockPtr(table[(s / bs) | 0]!) >>> 2) + (s % bs) * this.pool.headDim;
  }

  private table(head: HeadKV): Int32Array {
    return this.rt.i32(head.tablePtr, head.maxBlocks);
  }

  /** Append one slot from K and V rows at `kOff`/`vOff` of `k`/`v` (wasm views or plain arrays). */
  /**
   * Append one slot to a head. `mem` and `table` are views of wasm memory and of the head's block
   * table (valid for the whole append: the pool's region is fixed, and taking a block allocates
   * nothing).
   */
  private pushSlot(head: HeadKV, k: Float32Array, kOff: number, v: Float32Array, vOff: number, position: number, mem: Float32Array, table: Int32Array): void {
    const pool = this.pool;
    const d = pool.headDim;
    const bs = pool.blockSlots;
    if (head.length + 1 > head.maxBlocks * bs) {
      throw new ContextLengthError(`a sequence would hold more than the context of ${this.maxTokens} tokens; shorten the prompt or lower max tokens`);
    }
    const slot = head.length;
    if (slot % bs === 0) {
      // The block first: a pool that is full throws before the head counts it.
      const id = this.takeBlock();
      table[head.blocks++] = id;
    }
    const dst = this.slotOffset(table, slot);
    mem.set(k.subarray(kOff, kOff + d), dst);
    mem.set(v.subarray(vOff, vOff + d), dst + bs * d);
    if (head.positions.length <= slot) {
      const grown = new Int32Array(Math.max(slot + 1, head.positions.length * 2));
      grown.set(head.positions.subarray(0, head.length));
      head.positions = grown;
    }
    head.positions[slot] = position;
    head.length++;
    head.summary?.add(slot, mem, dst);
  }

  /**
   * Append T tokens' K and V for one layer. `kPtr`/`vPtr` hold [T, kvHeads * headDim] f32 rows
   * (K after RoPE); `positions` gives each row's token position.
   */
  append(layer: number, kPtr: number, vPtr: number, T: number, positions: ArrayLike<number>): void {
    const d = this.pool.headDim;
    const rowFloats = this.kvHeads * d;
    const heads = this.layerHeads[layer]!;
    const copies = heads.length / this.kvHeads;
    for (const head of heads) {
      if (head.length + T > head.maxBlocks * this.pool.blockSlots) {
        throw new ContextLengthError(
          `sequence would hold ${head.length + T} tokens, more than the context of ${this.maxTokens}; shorten the prompt or lower max tokens`,
        );
      }
    }
    this.pool.ensureRegion(); // taking a block below then allocates nothing
    const mem = this.view();
    for (let i = 0; i < heads.length; i++) {
      const h = (i / copies) | 0;
      const table = this.table(heads[i]!);
      for (let t = 0; t < T; t++) {
        const src = t * rowFloats + h * d;
        this.pushSlot(heads[i]!, mem, (kPtr >>> 2) + src, mem, (vPtr >>> 2) + src, positions[t]!, mem, table);
      }
    }
  }

  /** K rows of a head's slots, [length, d] (a copy). */
  readKeys(layer: number, h: number): Float32Array {
    return this.readRows(this.head(layer, h), 0);
  }

  /** V rows of a head's slots, [length, d] (a copy). */
  readValues(layer: number, h: number): Float32Array {
    return this.readRows(this.head(layer, h), this.pool.blockSlots * this.pool.headDim);
  }

  /** K rows of slots [from, to) of a head, [to - from, d] (a copy). */
  readKeyRange(layer: number, h: number, from: number, to: number): Float32Array {
    return this.readRows(this.head(layer, h), 0, from, to);
  }

  private readRows(head: HeadKV, shift: number, from = 0, to = head.length): Float32Array {
    const d = this.pool.headDim;
    const out = new Float32Array((to - from) * d);
    const mem = this.view();
    const table = this.table(head);
    for (let s = from; s < to; s++) {
      const o = this.slotOffset(table, s) + shift;
      out.set(mem.subarray(o, o + d), (s - from) * d);
    }
    return out;
  }

  /**
   * Keep only the slots `keep` (ascending, unique) of a head: survivors move down into the lowest
   * slots with their K, V and position, and blocks past the new length go back to the pool.
   */
  compact(layer: number, h: number, keep: Int32Array): void {
    const head = this.head(layer, h);
    const d = this.pool.headDim;
    const bs = this.pool.blockSlots;
    const mem = this.view();
    const table = this.table(head);
    for (let i = 0; i < keep.length; i++) {
      const s = keep[i]!;
      if (s < 0 || s >= head.length || (i > 0 && s <= keep[i - 1]!)) {
        throw new RangeError(`compact: kept slots must be ascending and within 0..${head.length - 1}, got ${s} at ${i}`);
      }
      if (s === i) continue;
      const from = this.slotOffset(table, s);
      const to = this.slotOffset(table, i);
      mem.copyWithin(to, from, from + d);
      mem.copyWithin(to + bs * d, from + bs * d, from + bs * d + d);
      head.positions[i] = head.positions[s]!;
    }
    head.length = keep.length;
    const blocks = Math.ceil(head.length / bs);
    for (let b = blocks; b < head.blocks; b++) this.giveBlock(table[b]!);
    head.blocks = blocks;
    if (head.summary) head.summary.rebuild(this.readKeys(layer, h), head.length);
  }

  /**
   * Give every query head of a layer its own copy of its KV head's slots (the cache "expanded"
   * G times, as original SnapKV does per query head). Costs G times the blocks; irreversible.
   */
  expandLayer(layer: number, group: number): void {
    if (this.isExpanded(layer) || group === 1) { this.groups[layer] = 1; return; }
    const old = this.layerHeads[layer]!;
    const d = this.pool.headDim;
    const fresh: HeadKV[] = [];
    try {
      for (let h = 0; h < old.length; h++) {
        const src = old[h]!;
        // Plain copies: pushing new slots may grow the pool and move the source blocks.
        const k = this.readKeys(layer, h);
        const v = this.readValues(layer, h);
        for (let g = 0; g < group; g++) {
          const head = this.newHead();
          fresh.push(head);
          if (this.summaryPage) head.summary = new PageSummary(this.summaryPage, d, this.rt);
          this.pool.ensureRegion();
          const mem = this.view();
          const table = this.table(head);
          for (let s = 0; s < src.length; s++) this.pushSlot(head, k, s * d, v, s * d, src.positions[s]!, mem, table);
        }
      }
    } catch (e) {
      // Out of blocks halfway: give back every copy made so far; the layer stays as it was.
      this.releaseHeads(fresh);
      throw e;
    }
    this.releaseHeads(old);
    this.layerHeads[layer] = fresh;
    this.groups[layer] = 1;
  }

  /**
   * A copy of this sequence in the same pool: every head's blocks copied into blocks of its own,
   * with positions, GQA expansion, page summaries and the next position. Reads start at zero.
   * Evaluation grids prefill a prompt once and fork it for every method (the copy is exact).
   */
  fork(): SequenceKV {
    if (this.released) throw new Error('cannot fork a released sequence (the prefilled prompt was released before a request started from it)');
    const copy = new SequenceKV(this.rt, this.pool, { layers: this.layers, kvHeads: this.kvHeads, maxTokens: this.maxTokens });
    const bytes = this.pool.blockBytes;
    try {
      for (let l = 0; l < this.layers; l++) {
        const src = this.layerHeads[l]!;
        if (src.length !== copy.layerHeads[l]!.length) {
          copy.releaseHeads(copy.layerHeads[l]!);
          copy.layerHeads[l] = src.map(() => copy.newHead());
        }
        copy.groups[l] = this.groups[l]!;
        for (let h = 0; h < src.length; h++) {
          const from = src[h]!;
          const to = copy.layerHeads[l]![h]!;
          for (let b = 0; b < from.blocks; b++) {
            const id = copy.takeBlock();
            copy.table(to)[to.blocks++] = id;
            // Allocation may move the pool: addresses are taken after it.
            const srcId = this.table(from)[b]!;
            this.rt.u8(this.pool.blockPtr(id), bytes).set(this.rt.u8(this.pool.blockPtr(srcId), bytes));
          }
          to.length = from.length;
          to.positions = from.positions.slice(0, Math.max(from.length, 1));
        }
      }
    } catch (e) {
      copy.release();
      throw e;
    }
    copy.nextPosition = this.nextPosition;
    if (this.summaryPage) copy.enableSummaries(this.summaryPage);
    return copy;
  }

  /** Keep per-page key min/max for every head from now on (idempotent for the same page). */
  enableSummaries(page: number): void {
    if (this.summaryPage === page) return;
    this.summaryPage = page;
    for (let l = 0; l < this.layers; l++) {
      const heads = this.layerHeads[l]!;
      for (let h = 0; h < heads.length; h++) {
        const head = heads[h]!;
        head.summary?.dispose();
        head.summary = new PageSummary(page, this.pool.headDim, this.rt);
        head.summary.rebuild(this.readKeys(l, h), head.length);
      }
    }
  }

  /** Slots held per head, for accounting. */
  lengths(): Int32Array {
    return Int32Array.from(this.heads.map((h) => h.length));
  }

  /** Slots stored over all heads. */
  totalSlots(): number {
    let n = 0;
    for (const h of this.heads) n += h.length;
    return n;
  }

  /** Bytes of the blocks this sequence holds. */
  blockBytes(): number {
    let b = 0;
    for (const h of this.heads) b += h.blocks;
    return b * this.pool.blockBytes;
  }

  /** Bytes of page summaries this sequence holds. */
  summaryBytes(): number {
    let b = 0;
    for (const h of this.heads) b += h.summary?.bytes ?? 0;
    return b;
  }

  private releaseHeads(heads: HeadKV[]): void {
    for (const head of heads) {
      const table = this.table(head);
      for (let b = 0; b < head.blocks; b++) this.giveBlock(table[b]!);
      head.blocks = 0;
      head.length = 0;
      this.rt.free(head.tablePtr);
      head.summary?.dispose();
      head.summary = null;
    }
  }

  /** Return every block to the pool and the tables to the runtime. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.dropReservation();
    for (const heads of this.layerHeads) this.releaseHeads(heads);
  }
}

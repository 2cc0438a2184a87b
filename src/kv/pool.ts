import type { Runtime } from '../runtime/wasm.ts';
import { WasmMemoryError } from '../errors.ts';

/** Bytes of one block: K then V, `blockSlots` rows of `headDim` f32 each. */
export function blockBytesFor(headDim: number, blockSlots: number): number {
  return 2 * blockSlots * headDim * 4;
}

export interface BlockPoolOptions {
  headDim: number;
  /** Token slots per block (KV-Compress uses 16). */
  blockSlots?: number;
  /** The pool's byte limit: its capacity is this many bytes of whole blocks, fixed for its life. */
  maxBytes: number;
}

/** The pool cannot hand out another block within its byte limit. */
export class PoolExhaustedError extends WasmMemoryError {}

/**
 * One contiguous region of wasm memory cut into fixed-size blocks, shared by every sequence.
 * A block holds K and V of one (sequence, layer, KV head). The capacity is fixed from the byte
 * limit; the region is taken from the runtime once, at the first block handed out or reserved, so a
 * pool costs nothing until used and its blocks never move. Kernels address block b at
 * `basePtr + b * blockBytes`.
 *
 * A step reserves the blocks it will append before any kernel runs (`reserve`, all or nothing),
 * then takes them (`allocate(true)`); blocks taken without a reservation come from what is neither
 * in use nor reserved. The pool only counts: who may grow is the scheduler's decision.
 */
export class BlockPool {
  readonly headDim: number;
  readonly blockSlots: number;
  readonly blockBytes: number;
  readonly maxBytes: number;
  /** Blocks the pool can hold: floor(maxBytes / blockBytes). */
  readonly capacityBlocks: number;
  private rt: Runtime;
  private base = 0;
  private mapped = false;
  private freeIds: Int32Array;
  private freeCount = 0;
  private inUse = 0;
  private reservedCount = 0;
  private peak = 0;

  constructor(rt: Runtime, opts: BlockPoolOptions) {
    this.rt = rt;
    this.headDim = opts.headDim;
    this.blockSlots = opts.blockSlots ?? 16;
    this.blockBytes = blockBytesFor(this.headDim, this.blockSlots);
    if (!(opts.maxBytes > 0) || !Number.isFinite(opts.maxBytes)) throw new RangeError(`KV memory limit must be a positive number of bytes, got ${opts.maxBytes}`);
    this.maxBytes = opts.maxBytes;
    this.capacityBlocks = Math.floor(this.maxBytes / this.blockBytes);
    if (this.capacityBlocks < 1) throw new PoolExhaustedError(`KV memory limit ${fmtBytes(this.maxBytes)} is below one block of ${this.blockBytes} bytes; raise it`);
    this.freeIds = new Int32Array(this.capacityBlocks);
    // Hand out low ids first: the stack holds ids in descending order.
    for (let id = this.capacityBlocks - 1; id >= 0; id--) this.freeIds[this.freeCount++] = id;
  }

  /** Byte offset of the pool region (taking the region if it is not yet taken; fixed from then on). */
  get basePtr(): number { this.ensureRegion(); return this.base; }
  get blocksInUse(): number { return this.inUse; }
  /** Blocks promised to steps that have not taken them yet. */
  get reservedBlocks(): number { return this.reservedCount; }
  /** Blocks neither in use nor reserved. */
  get freeBlocks(): number { return this.capacityBlocks - this.inUse - this.reservedCount; }
  /** Bytes held by allocated blocks: the figure every memory claim uses. */
  get bytesInUse(): number { return this.inUse * this.blockBytes; }
  get peakBytes(): number { return this.peak * this.blockBytes; }
  resetPeak(): void { this.peak = this.inUse; }

  /** Byte offset of block `id`'s K rows; V rows follow at + blockSlots*headDim*4. Ids exist only once the region does. */
  blockPtr(id: number): number { return this.base + id * this.blockBytes; }

  /** Promise `n` blocks to a step: all of them (true) or none (false). */
  reserve(n: number): boolean {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`reserve: block count must be an integer >= 0, got ${n}`);
    if (n > this.freeBlocks) return false;
    this.reservedCount += n;
    return true;
  }

  /** Give back `n` reserved blocks that were not taken. */
  unreserve(n: number): void {
    if (n > this.reservedCount) throw new RangeError(`unreserve: ${n} blocks given back, ${this.reservedCount} reserved`);
    this.reservedCount -= n;
  }

  /** A block: from a reservation made earlier (`reserved`), else from the free ones. */
  allocate(reserved = false): number {
    if (reserved) {
      if (this.reservedCount === 0) throw new RangeError('allocate: no block is reserved');
      this.reservedCount--;
    } else if (this.freeBlocks === 0) {
      throw new PoolExhaustedError(
        `KV pool is full: ${this.inUse} blocks of ${this.blockBytes} bytes in use${this.reservedCount ? `, ${this.reservedCount} reserved` : ''}, limit ${fmtBytes(this.maxBytes)}; ` +
          'raise the KV memory limit, shorten the prompt or use a compression method',
      );
    }
    this.ensureRegion();
    const id = this.freeIds[--this.freeCount]!;
    this.inUse++;
    if (this.inUse > this.peak) this.peak = this.inUse;
    return id;
  }

  release(id: number): void {
    this.freeIds[this.freeCount++] = id;
    this.inUse--;
  }

  /**
   * Takes the region from the runtime, once. Callers that hold a view of wasm memory across
   * allocations take the region first, so that no later allocation grows the memory under them.
   */
  ensureRegion(): void {
    if (this.mapped) return;
    this.base = this.rt.alloc(this.capacityBlocks * this.blockBytes, 64);
    this.mapped = true;
  }

  dispose(): void {
    if (this.mapped) this.rt.free(this.base);
    this.mapped = false;
  }
}

export function fmtBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return 'unlimited';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${v.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

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
  /** Blocks reserved up front; the pool grows by doubling past it. */
  initialBlocks?: number;
  /** Hard limit on the pool's bytes; allocation past it throws PoolExhaustedError. */
  maxBytes?: number;
}

/** The pool cannot hand out another block within its byte limit. */
export class PoolExhaustedError extends WasmMemoryError {}

/**
 * One contiguous region of wasm memory cut into fixed-size blocks, shared by every sequence.
 * A block holds K and V of one (sequence, layer, KV head). Kernels address block b at
 * `basePtr + b * blockBytes`, so growing the pool moves the region but never renumbers blocks.
 */
export class BlockPool {
  readonly headDim: number;
  readonly blockSlots: number;
  readonly blockBytes: number;
  readonly maxBytes: number;
  private rt: Runtime;
  private base = 0;
  private capacity = 0;
  private freeIds: Int32Array = new Int32Array(0);
  private freeCount = 0;
  private inUse = 0;
  private peak = 0;

  constructor(rt: Runtime, opts: BlockPoolOptions) {
    this.rt = rt;
    this.headDim = opts.headDim;
    this.blockSlots = opts.blockSlots ?? 16;
    this.blockBytes = blockBytesFor(this.headDim, this.blockSlots);
    this.maxBytes = opts.maxBytes ?? Number.POSITIVE_INFINITY;
    const limit = Math.floor(this.maxBytes / this.blockBytes);
    if (limit < 1) throw new PoolExhaustedError(`KV memory limit ${fmtBytes(this.maxBytes)} is below one block of ${this.blockBytes} bytes; raise it`);
    this.grow(Math.max(1, Math.min(limit, opts.initialBlocks ?? 64)));
  }

  /** Byte offset of the pool region (changes when the pool grows). */
  get basePtr(): number { return this.base; }
  get capacityBlocks(): number { return this.capacity; }
  get blocksInUse(): number { return this.inUse; }
  /** Bytes held by allocated blocks: the figure every memory claim uses. */
  get bytesInUse(): number { return this.inUse * this.blockBytes; }
  get peakBytes(): number { return this.peak * this.blockBytes; }
  resetPeak(): void { this.peak = this.inUse; }

  /** Byte offset of block `id`'s K rows; V rows follow at + blockSlots*headDim*4. */
  blockPtr(id: number): number { return this.base + id * this.blockBytes; }

  allocate(): number {
    if (this.freeCount === 0) {
      const limit = Math.floor(this.maxBytes / this.blockBytes);
      if (this.capacity >= limit) {
        throw new PoolExhaustedError(
          `KV pool is full: ${this.inUse} blocks of ${this.blockBytes} bytes in use, limit ${fmtBytes(this.maxBytes)}; ` +
            'raise the KV memory limit, shorten the prompt or use a compression method',
        );
      }
      this.grow(Math.min(limit, this.capacity * 2));
    }
    const id = this.freeIds[--this.freeCount]!;
    this.inUse++;
    if (this.inUse > this.peak) this.peak = this.inUse;
    return id;
  }

  release(id: number): void {
    this.freeIds[this.freeCount++] = id;
    this.inUse--;
  }

  private grow(newCapacity: number): void {
    const bytes = newCapacity * this.blockBytes;
    const ptr = this.rt.alloc(bytes, 64);
    if (this.capacity > 0) {
      this.rt.u8(ptr, this.capacity * this.blockBytes).set(this.rt.u8(this.base, this.capacity * this.blockBytes));
      this.rt.free(this.base);
    }
    const ids = new Int32Array(newCapacity);
    ids.set(this.freeIds.subarray(0, this.freeCount));
    let n = this.freeCount;
    // Hand out low ids first: push new ids in descending order onto the stack.
    for (let id = newCapacity - 1; id >= this.capacity; id--) ids[n++] = id;
    this.freeIds = ids;
    this.freeCount = n;
    this.base = ptr;
    this.capacity = newCapacity;
  }

  dispose(): void {
    if (this.capacity > 0) this.rt.free(this.base);
    this.capacity = 0;
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

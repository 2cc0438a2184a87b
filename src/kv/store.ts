import type { Runtime } from '../runtime/wasm.ts';
import type { BlockPool } from './pool.ts';
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

/** All heads of one sequence, appended to by the forward pass and compacted by eviction. */
export class SequenceKV {
  readonly layers: number;
  readonly kvHeads: number;
  readonly maxTokens: number;
  readonly heads: HeadKV[];
  /** Tokens this sequence has seen: the RoPE position of the next token. */
  nextPosition = 0;
  private rt: Runtime;
  private pool: BlockPool;
  private released = false;

  constructor(rt: Runtime, pool: BlockPool, opts: SequenceKVOptions) {
    this.rt = rt;
    this.pool = pool;
    this.layers = opts.layers;
    this.kvHeads = opts.kvHeads;
    this.maxTokens = opts.maxTokens;
    const maxBlocks = Math.ceil(opts.maxTokens / pool.blockSlots);
    this.heads = [];
    for (let i = 0; i < opts.layers * opts.kvHeads; i++) this.heads.push(new HeadKV(rt, maxBlocks, pool.blockSlots));
  }

  head(layer: number, kvHead: number): HeadKV {
    return this.heads[layer * this.kvHeads + kvHead]!;
  }

  /**
   * Append T tokens' K and V for one layer. `kPtr`/`vPtr` hold [T, kvHeads * headDim] f32 rows
   * (K after RoPE); `positions` gives each row's token position.
   */
  append(layer: number, kPtr: number, vPtr: number, T: number, positions: ArrayLike<number>): void {
    const pool = this.pool;
    const d = pool.headDim;
    const bs = pool.blockSlots;
    const rowFloats = this.kvHeads * d;
    let mem = this.rt.f32(0, this.rt.memory.buffer.byteLength >>> 2);
    const kBase = kPtr >>> 2;
    const vBase = vPtr >>> 2;
    for (let h = 0; h < this.kvHeads; h++) {
      const head = this.head(layer, h);
      if (head.length + T > head.maxBlocks * bs) {
        throw new ContextLengthError(
          `sequence would hold ${head.length + T} tokens, more than the context of ${this.maxTokens}; shorten the prompt or lower max tokens`,
        );
      }
      let table = this.rt.i32(head.tablePtr, head.maxBlocks);
      if (head.positions.length < head.length + T) {
        const grown = new Int32Array(Math.max(head.length + T, head.positions.length * 2));
        grown.set(head.positions.subarray(0, head.length));
        head.positions = grown;
      }
      for (let t = 0; t < T; t++) {
        const slot = head.length;
        const inBlock = slot % bs;
        if (inBlock === 0) {
          const id = pool.allocate();
          // Pool growth may grow memory: refresh views onto the current buffer.
          if (mem.buffer !== this.rt.memory.buffer) {
            mem = this.rt.f32(0, this.rt.memory.buffer.byteLength >>> 2);
            table = this.rt.i32(head.tablePtr, head.maxBlocks);
          }
          table[head.blocks++] = id;
        }
        const block = table[(slot / bs) | 0]!;
        const dst = (pool.blockPtr(block) >>> 2) + inBlock * d;
        const src = t * rowFloats + h * d;
        mem.copyWithin(dst, kBase + src, kBase + src + d);
        mem.copyWithin(dst + bs * d, vBase + src, vBase + src + d);
        head.positions[slot] = positions[t]!;
        head.length++;
      }
    }
  }

  /** Slots held per head, for accounting. */
  lengths(): Int32Array {
    const out = new Int32Array(this.heads.length);
    for (let i = 0; i < this.heads.length; i++) out[i] = this.heads[i]!.length;
    return out;
  }

  /** Slots stored over all heads. */
  totalSlots(): number {
    let n = 0;
    for (const h of this.heads) n += h.length;
    return n;
  }

  /** Return every block to the pool and the tables to the runtime. */
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const head of this.heads) {
      const table = this.rt.i32(head.tablePtr, head.maxBlocks);
      for (let b = 0; b < head.blocks; b++) this.pool.release(table[b]!);
      head.blocks = 0;
      head.length = 0;
      this.rt.free(head.tablePtr);
    }
  }
}

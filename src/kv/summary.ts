import type { Runtime } from '../runtime/wasm.ts';

/**
 * Per-page key min/max of one head: element-wise min and max of K over `page` consecutive
 * slots (Quest's page bounds, RocketKV's hybrid approximation). Kept beside the blocks,
 * updated on append and rebuilt on compaction.
 *
 * Given a runtime, min and max live in wasm memory (minPtr, maxPtr), where the selection kernels
 * read them in place each decode step instead of a copy; `dispose` frees them. The runtime's
 * memory is shared, so the views stay valid when it grows. Without one they are plain arrays.
 */
export class PageSummary {
  readonly page: number;
  readonly d: number;
  min: Float32Array;
  max: Float32Array;
  pages = 0;
  /** Byte offsets of min and max in wasm memory (0: plain arrays); one allocation, max after min. */
  minPtr = 0;
  maxPtr = 0;
  private readonly rt: Runtime | undefined;

  constructor(page: number, d: number, rt?: Runtime) {
    this.page = page;
    this.d = d;
    this.rt = rt;
    this.min = this.max = new Float32Array(0);
    this.allocate(16 * d);
  }

  /** Room for n floats in each of min and max, keeping what they hold. */
  private allocate(n: number): void {
    const oldMin = this.min, oldMax = this.max, oldPtr = this.minPtr;
    if (this.rt) {
      this.minPtr = this.rt.alloc(2 * n * 4, 64);
      this.maxPtr = this.minPtr + n * 4;
      this.min = this.rt.f32(this.minPtr, n);
      this.max = this.rt.f32(this.maxPtr, n);
    } else {
      this.min = new Float32Array(n);
      this.max = new Float32Array(n);
    }
    this.min.set(oldMin);
    this.max.set(oldMax);
    if (oldPtr !== 0) this.rt!.free(oldPtr);
  }

  /** Fold the K row of slot `slot` (slots arrive in order) into its page. */
  add(slot: number, k: Float32Array, kOffset: number): void {
    const d = this.d;
    const p = (slot / this.page) | 0;
    if (p >= this.pages) {
      if ((p + 1) * d > this.min.length) this.allocate(Math.max((p + 1) * d, this.min.length * 2));
      this.pages = p + 1;
      for (let i = 0; i < d; i++) {
        this.min[p * d + i] = k[kOffset + i]!;
        this.max[p * d + i] = k[kOffset + i]!;
      }
      return;
    }
    for (let i = 0; i < d; i++) {
      const v = k[kOffset + i]!;
      if (v < this.min[p * d + i]!) this.min[p * d + i] = v;
      if (v > this.max[p * d + i]!) this.max[p * d + i] = v;
    }
  }

  /** Recompute from all keys ([length, d]) after a compaction. */
  rebuild(keys: Float32Array, length: number): void {
    this.pages = 0;
    for (let s = 0; s < length; s++) this.add(s, keys, s * this.d);
  }

  /** Bytes held: min and max of every page. */
  get bytes(): number {
    return 2 * this.pages * this.d * 4;
  }

  /** Frees the wasm memory of min and max (nothing for plain arrays); the summary is empty after. */
  dispose(): void {
    if (this.minPtr !== 0) this.rt!.free(this.minPtr);
    this.minPtr = this.maxPtr = 0;
    this.min = this.max = new Float32Array(0);
    this.pages = 0;
  }
}

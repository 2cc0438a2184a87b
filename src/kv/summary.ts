/**
 * Per-page key summaries of one head: element-wise min and max of K over `page` consecutive
 * slots (Quest's page bounds, RocketKV's hybrid approximation). Kept beside the blocks,
 * updated on append and rebuilt on compaction.
 */
export class PageSummary {
  readonly page: number;
  readonly d: number;
  min: Float32Array;
  max: Float32Array;
  pages = 0;

  constructor(page: number, d: number) {
    this.page = page;
    this.d = d;
    this.min = new Float32Array(16 * d);
    this.max = new Float32Array(16 * d);
  }

  /** Fold the K row of slot `slot` (slots arrive in order) into its page. */
  add(slot: number, k: Float32Array, kOffset: number): void {
    const d = this.d;
    const p = (slot / this.page) | 0;
    if (p >= this.pages) {
      if ((p + 1) * d > this.min.length) {
        const n = Math.max((p + 1) * d, this.min.length * 2);
        const mn = new Float32Array(n);
        const mx = new Float32Array(n);
        mn.set(this.min);
        mx.set(this.max);
        this.min = mn;
        this.max = mx;
      }
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
}

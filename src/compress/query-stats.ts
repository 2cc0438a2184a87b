/**
 * Moments of a prompt's queries before RoPE, per layer and query head: what Expected Attention
 * (kvpress's ExpectedAttentionPress) models future queries with.
 *
 *   rows r = skip .. T-1 of the prompt (the first `skip` rows are left out, as kvpress leaves out
 *   its sink positions); mean = sum q_r / n; cov = sum (q_r - mean)(q_r - mean)^T / n (biased).
 *
 * Sums are kept in f64 (sum q and the upper triangle of sum q q^T); cov = S/n - mean mean^T.
 */
export class QueryStats {
  readonly skip: number;
  private numHeads: number;
  private headDim: number;
  private seen: number[] = [];
  private counts: number[] = [];
  private sums: Float64Array[] = [];
  /** Per layer: numHeads blocks of headDim x headDim (upper triangle filled while adding). */
  private outer: Float64Array[] = [];

  constructor(skip: number, numHeads: number, headDim: number) {
    this.skip = skip;
    this.numHeads = numHeads;
    this.headDim = headDim;
  }

  /** Pre-RoPE query rows of one layer, [T, numHeads * headDim], in prompt order. */
  onPreRopeQueries(layer: number, q: Float32Array, T: number): void {
    const H = this.numHeads;
    const d = this.headDim;
    const qDim = H * d;
    const before = this.seen[layer] ?? 0;
    this.seen[layer] = before + T;
    const first = Math.max(0, this.skip - before);
    if (first >= T) return;
    const sum = (this.sums[layer] ??= new Float64Array(qDim));
    const outer = (this.outer[layer] ??= new Float64Array(H * d * d));
    this.counts[layer] = (this.counts[layer] ?? 0) + (T - first);
    const row = new Float64Array(d);
    for (let t = first; t < T; t++) {
      for (let h = 0; h < H; h++) {
        const o = t * qDim + h * d;
        for (let i = 0; i < d; i++) row[i] = q[o + i]!;
        const base = h * d * d;
        for (let i = 0; i < d; i++) {
          const qi = row[i]!;
          sum[h * d + i]! += qi;
          const ri = base + i * d;
          for (let j = i; j < d; j++) outer[ri + j]! += qi * row[j]!;
        }
      }
    }
  }

  /** Rows counted for a layer (after the skipped ones). */
  count(layer: number): number {
    return this.counts[layer] ?? 0;
  }

  /** mean [numHeads * headDim] and cov [numHeads, headDim, headDim] of a layer, or null with no rows. */
  moments(layer: number): { mean: Float64Array; cov: Float64Array } | null {
    const n = this.count(layer);
    if (n === 0) return null;
    const H = this.numHeads;
    const d = this.headDim;
    const mean = new Float64Array(H * d);
    const sum = this.sums[layer]!;
    for (let i = 0; i < H * d; i++) mean[i] = sum[i]! / n;
    const outer = this.outer[layer]!;
    const cov = new Float64Array(H * d * d);
    for (let h = 0; h < H; h++) {
      const base = h * d * d;
      for (let i = 0; i < d; i++) {
        for (let j = i; j < d; j++) {
          const c = outer[base + i * d + j]! / n - mean[h * d + i]! * mean[h * d + j]!;
          cov[base + i * d + j] = c;
          cov[base + j * d + i] = c;
        }
      }
    }
    return { mean, cov };
  }

  /** Take another accumulator's state (a prompt prefilled elsewhere). */
  copyFrom(other: QueryStats): void {
    if (other.skip !== this.skip || other.numHeads !== this.numHeads || other.headDim !== this.headDim) {
      throw new RangeError(`query statistics kept with skip ${other.skip}, this method needs skip ${this.skip}`);
    }
    this.seen = other.seen.slice();
    this.counts = other.counts.slice();
    this.sums = other.sums.map((a) => a.slice());
    this.outer = other.outer.map((a) => a.slice());
  }

  clear(): void {
    this.seen = [];
    this.counts = [];
    this.sums = [];
    this.outer = [];
  }
}

/**
 * The RoPE rotation averaged over positions from, from+1, ..., from+n-1, for the rotate-half layout
 * (pair i with i + d/2 at angle p * invFreq[i]): per pair, the mean cos and the mean sin.
 * As a matrix, R = diag(c, c) + [[0, -diag(s)], [diag(s), 0]].
 */
export function averageRotation(invFreq: ArrayLike<number>, from: number, n: number): { cos: Float64Array; sin: Float64Array } {
  const half = invFreq.length;
  const cos = new Float64Array(half);
  const sin = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    let c = 0;
    let s = 0;
    // f32 angles, as the kernels and transformers compute them (position * inv_freq in f32).
    for (let p = from; p < from + n; p++) {
      const a = Math.fround(p * invFreq[i]!);
      c += Math.cos(a);
      s += Math.sin(a);
    }
    cos[i] = c / n;
    sin[i] = s / n;
  }
  return { cos, sin };
}

/** R x for one head vector x of length d = 2 * half (rotate-half layout). */
export function rotate(rot: { cos: Float64Array; sin: Float64Array }, x: ArrayLike<number>, xOff = 0): Float64Array {
  const half = rot.cos.length;
  const out = new Float64Array(2 * half);
  for (let i = 0; i < half; i++) {
    const a = x[xOff + i]!;
    const b = x[xOff + i + half]!;
    out[i] = rot.cos[i]! * a - rot.sin[i]! * b;
    out[i + half] = rot.cos[i]! * b + rot.sin[i]! * a;
  }
  return out;
}

/** R C R^T for one head's d x d covariance C (row-major at cOff). */
export function rotateCov(rot: { cos: Float64Array; sin: Float64Array }, c: ArrayLike<number>, cOff = 0): Float64Array {
  const d = 2 * rot.cos.length;
  // RC: rotate every column of C; then (RC)R^T: rotate every row of RC.
  const rc = new Float64Array(d * d);
  const col = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    for (let i = 0; i < d; i++) col[i] = c[cOff + i * d + j]!;
    const r = rotate(rot, col);
    for (let i = 0; i < d; i++) rc[i * d + j] = r[i]!;
  }
  const out = new Float64Array(d * d);
  for (let i = 0; i < d; i++) out.set(rotate(rot, rc, i * d), i * d);
  return out;
}

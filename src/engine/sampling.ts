import { UsageError } from '../errors.ts';

export interface SamplingOptions {
  /** 0 (the default) is greedy decoding. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = all). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 = all). */
  topP?: number;
  /** Seed of the sampler's random stream, for reproducible sampling. */
  seed?: number;
}

/** SplitMix32-style generator: tiny, fast and reproducible across platforms. */
export function makeRng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    z = (z ^ (z >>> 16)) >>> 0;
    return z / 4294967296;
  };
}

export function validateSampling(o: SamplingOptions): void {
  const t = o.temperature ?? 0;
  if (!(t >= 0) || !Number.isFinite(t)) throw new UsageError(`temperature must be a number >= 0, got ${o.temperature}`);
  const k = o.topK ?? 0;
  if (!Number.isInteger(k) || k < 0) throw new UsageError(`top-k must be an integer >= 0, got ${o.topK}`);
  const p = o.topP ?? 1;
  if (!(p > 0 && p <= 1)) throw new UsageError(`top-p must be in (0, 1], got ${o.topP}`);
}

export function argmax(logits: Float32Array): number {
  let best = 0;
  let bestV = logits[0]!;
  for (let i = 1; i < logits.length; i++) {
    const v = logits[i]!;
    if (v > bestV) { bestV = v; best = i; }
  }
  return best;
}

/** Picks the next token from logits: greedy, or temperature with top-k and top-p filtering. */
export class Sampler {
  private temperature: number;
  private topK: number;
  private topP: number;
  private rng: () => number;

  constructor(opts: SamplingOptions = {}) {
    validateSampling(opts);
    this.temperature = opts.temperature ?? 0;
    this.topK = opts.topK ?? 0;
    this.topP = opts.topP ?? 1;
    this.rng = makeRng(opts.seed ?? 0);
  }

  sample(logits: Float32Array): number {
    if (this.temperature === 0 || this.topK === 1) return argmax(logits);
    const n = logits.length;
    let max = -Infinity;
    for (let i = 0; i < n; i++) if (logits[i]! > max) max = logits[i]!;
    // Tokens more than e^-40 less likely than the best cannot matter to any cut: skip sorting them.
    const floor = max - 40 * this.temperature;
    let count = 0;
    for (let i = 0; i < n; i++) if (logits[i]! >= floor) count++;
    let idx: Uint32Array = new Uint32Array(count);
    for (let i = 0, j = 0; i < n; i++) if (logits[i]! >= floor) idx[j++] = i;
    idx.sort((a, b) => logits[b]! - logits[a]! || a - b);
    if (this.topK > 0 && this.topK < idx.length) idx = idx.subarray(0, this.topK);
    const probs = new Float64Array(idx.length);
    let sum = 0;
    for (let i = 0; i < idx.length; i++) {
      const p = Math.exp((logits[idx[i]!]! - max) / this.temperature);
      probs[i] = p;
      sum += p;
    }
    let keep = idx.length;
    if (this.topP < 1) {
      let acc = 0;
      for (let i = 0; i < idx.length; i++) {
        acc += probs[i]! / sum;
        if (acc >= this.topP) { keep = i + 1; break; }
      }
    }
    let total = 0;
    for (let i = 0; i < keep; i++) total += probs[i]!;
    let u = this.rng() * total;
    for (let i = 0; i < keep; i++) {
      u -= probs[i]!;
      if (u <= 0) return idx[i]!;
    }
    return idx[keep - 1]!;
  }
}

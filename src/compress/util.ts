/** Shared plumbing of the compression methods (add-only: never change an existing function's behaviour). */
import type { LayerView } from './press.ts';

// --- observation-window scoring (SnapKV family) ---------------------------------------------

/**
 * Sum over the group's query heads and the last `w` window queries of the attention probabilities
 * of stored head h, over its first length-w slots only (the window columns are dropped).
 */
export function windowAttentionSum(view: LayerView, h: number, w: number): Float64Array {
  const n = view.length(h);
  const cols = n - w;
  const out = new Float64Array(Math.max(cols, 0));
  if (cols <= 0 || w <= 0) return out;
  const probs = view.windowProbs(h, w);
  const rows = view.group * w;
  for (let r = 0; r < rows; r++) {
    const base = r * n;
    for (let j = 0; j < cols; j++) out[j] += probs[base + j]!;
  }
  return out;
}

/**
 * 1-D pooling, stride 1, `same` padding of (kernel-1)/2 on each side (kernel must be odd).
 * avg: zero padding counted in the divisor (PyTorch avg_pool1d's default); max: padding ignored.
 */
export function pool1d(src: Float64Array, kernel: number, mode: 'avg' | 'max'): Float64Array {
  const n = src.length;
  const half = (kernel - 1) >> 1;
  const out = new Float64Array(n);
  if (kernel <= 1) { out.set(src); return out; }
  for (let i = 0; i < n; i++) {
    const lo = Math.max(0, i - half);
    const hi = Math.min(n - 1, i + half);
    if (mode === 'avg') {
      let s = 0;
      for (let j = lo; j <= hi; j++) s += src[j]!;
      out[i] = s / kernel;
    } else {
      let m = -Infinity;
      for (let j = lo; j <= hi; j++) if (src[j]! > m) m = src[j]!;
      out[i] = m;
    }
  }
  return out;
}

/** Per-slot scores of a head of `length` slots: `prefix` for the first slots, +Infinity for the last `w` (always kept). */
export function scoresWithWindow(prefix: Float64Array, length: number, w: number): Float32Array {
  const cut = Math.max(0, length - w);
  const out = new Float32Array(length);
  out.set(prefix.subarray(0, cut));
  out.fill(Infinity, cut);
  return out;
}
// --- end observation-window scoring ---------------------------------------------------------

/** Shared plumbing of the compression methods (add-only: never change an existing function's behaviour). */
import type { LayerView } from './press.ts';
import type { PageSummary } from '../kv/summary.ts';
import type { Runtime } from '../runtime/wasm.ts';

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

// --- decode-time selection (quest, sparq, hybrid, exact_topk) -------------------------------

/**
 * Ascending indices of the k largest scores, ties to the lower index: the same answer as press.ts
 * `topK`, in linear expected time (a quickselect finds the k-th value) since selectors run per
 * head per layer per step over every slot.
 */
export function topKSelect(scores: Float64Array, k: number): Int32Array {
  const n = scores.length;
  if (k >= n) return Int32Array.from({ length: n }, (_, i) => i);
  if (k <= 0) return new Int32Array(0);
  const a = Float64Array.from(scores);
  let lo = 0;
  let hi = n - 1;
  const kth = k - 1;
  let threshold = NaN;
  while (lo < hi) {
    const x = a[lo]!, y = a[(lo + hi) >> 1]!, z = a[hi]!;
    const pivot = Math.max(Math.min(x, y), Math.min(Math.max(x, y), z));
    let i = lo;
    let j = hi;
    // Descending Hoare partition: [lo, j] >= pivot, [i, hi] <= pivot, between them == pivot.
    while (i <= j) {
      while (a[i]! > pivot) i++;
      while (a[j]! < pivot) j--;
      if (i <= j) {
        const t = a[i]!; a[i] = a[j]!; a[j] = t;
        i++; j--;
      }
    }
    if (kth <= j) hi = j;
    else if (kth >= i) lo = i;
    else { threshold = a[kth]!; break; }
  }
  if (Number.isNaN(threshold)) threshold = a[kth]!;
  let above = 0;
  for (let s = 0; s < n; s++) if (scores[s]! > threshold) above++;
  let ties = k - above;
  const out = new Int32Array(k);
  let m = 0;
  for (let s = 0; s < n && m < k; s++) {
    const v = scores[s]!;
    if (v > threshold) out[m++] = s;
    else if (v === threshold && ties > 0) { out[m++] = s; ties--; }
  }
  return out;
}

/** softmax(x / temperature) in place over x[from, to). */
export function softmaxInPlace(x: Float64Array, from: number, to: number, temperature = 1): void {
  let max = -Infinity;
  for (let i = from; i < to; i++) { x[i] = x[i]! / temperature; if (x[i]! > max) max = x[i]!; }
  let sum = 0;
  for (let i = from; i < to; i++) { const e = Math.exp(x[i]! - max); x[i] = e; sum += e; }
  for (let i = from; i < to; i++) x[i] = x[i]! / sum;
}

/** Slots (ascending) of the given ascending pages of `page` slots, the last page cut at `length`. */
export function pageSlots(pages: Int32Array, page: number, length: number): Int32Array {
  let count = 0;
  for (const p of pages) count += Math.min(page, length - p * page);
  const out = new Int32Array(count);
  let m = 0;
  for (const p of pages) {
    const end = Math.min(length, (p + 1) * page);
    for (let s = p * page; s < end; s++) out[m++] = s;
  }
  return out;
}

/** Per channel, the sum over the group's query heads of |q| ([group, d] in q). */
export function groupAbsSum(q: Float32Array, group: number, d: number): Float64Array {
  const out = new Float64Array(d);
  for (let g = 0; g < group; g++) for (let i = 0; i < d; i++) out[i] += Math.abs(q[g * d + i]!);
  return out;
}
/**
 * Inputs of a one-kernel selector (assembly/select.ts) in the runtime's step arena: the group's
 * queries [G, d] and the head's page min and max [pages, d], then `regions` more (byte sizes, each
 * rounded up to 64). Returns the pointers: q, min, max, then one per region.
 */
export function stageSelectInputs(rt: Runtime, q: Float32Array, G: number, d: number, summary: PageSummary, pages: number, regions: number[]): number[] {
  return writeSelectInputs(rt, rt.stepArena(selectInputsBytes(G, d, pages, regions)), q, G, d, summary, pages, regions);
}

const up64 = (b: number): number => Math.ceil(b / 64) * 64;

/** Bytes stageSelectInputs / writeSelectInputs lay out for one head. */
export function selectInputsBytes(G: number, d: number, pages: number, regions: number[]): number {
  return [G * d * 4, pages * d * 4, pages * d * 4, ...regions].reduce((a, b) => a + up64(b), 0);
}

/**
 * stageSelectInputs' layout written at `at` (selectInputsBytes long), for kernels that take several
 * heads in one arena. A summary kept in wasm memory (PageSummary with a runtime) is not copied:
 * its own min and max pointers are returned, and their places in the layout stay unused.
 */
export function writeSelectInputs(rt: Runtime, at: number, q: Float32Array, G: number, d: number, summary: PageSummary, pages: number, regions: number[]): number[] {
  const ptrs: number[] = [];
  for (const size of [G * d * 4, pages * d * 4, pages * d * 4, ...regions]) { ptrs.push(at); at += up64(size); }
  rt.f32(ptrs[0]!, G * d).set(q.subarray(0, G * d));
  if (summary.minPtr !== 0) {
    ptrs[1] = summary.minPtr;
    ptrs[2] = summary.maxPtr;
  } else {
    rt.f32(ptrs[1]!, pages * d).set(summary.min.subarray(0, pages * d));
    rt.f32(ptrs[2]!, pages * d).set(summary.max.subarray(0, pages * d));
  }
  return ptrs;
}
// --- end decode-time selection --------------------------------------------------------------

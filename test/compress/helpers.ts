// --- decode-time selector views (quest, sparq, hybrid, exact_topk tests) --------------------
import type { Selection, SelectView } from '../../src/compress/press.ts';
import type { CompressionSession } from '../../src/compress/session.ts';
import { PageSummary } from '../../src/kv/summary.ts';

/** Deterministic uniform [0, 1) generator (mulberry32) so failures reproduce. */
export function selectorRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SelectFixture {
  view: SelectView;
  /** Bytes the selector declared through countRead, summed over calls. */
  reads: { kBytes: number; summaryBytes: number };
}

/**
 * A SelectView over dense arrays: q is [group][d], keys [n][d]. When summaryPage > 0 the view
 * carries a PageSummary built by the store's own class (tests compute their page min/max separately).
 */
export function denseSelectView(q: number[][], keys: number[][], summaryPage: number): SelectFixture {
  const group = q.length;
  const d = q[0]!.length;
  const n = keys.length;
  const qf = new Float32Array(group * d);
  q.forEach((row, g) => qf.set(row, g * d));
  const kf = new Float32Array(n * d);
  keys.forEach((row, s) => kf.set(row, s * d));
  let summary: PageSummary | null = null;
  if (summaryPage > 0) {
    summary = new PageSummary(summaryPage, d);
    summary.rebuild(kf, n);
  }
  const reads = { kBytes: 0, summaryBytes: 0 };
  const view: SelectView = {
    layer: 0,
    h: 0,
    group,
    headDim: d,
    q: qf,
    length: n,
    positions: Int32Array.from({ length: n }, (_, i) => i),
    summary,
    keys: () => kf.slice(),
    countRead: (kBytes, summaryBytes) => { reads.kBytes += kBytes; reads.summaryBytes += summaryBytes; },
  };
  return { view, reads };
}
// --- end decode-time selector views ---------------------------------------------------------

// --- dense attention layers for prefill scorers (SnapKV family) -----------------------------
import type { LayerView, ModelShape, PlanContext } from '../../src/compress/press.ts';

/** The same generator under the name the layer tests use. */
export const seededRandom = selectorRandom;

/** One layer at the end of a prompt of `length` tokens (positions 0..length-1), as plain arrays. */
export interface DenseAttentionLayer {
  shape: ModelShape;
  length: number;
  /** Window query rows kept (the last `rows` prompt tokens). */
  rows: number;
  /** [rows, numHeads * headDim] */
  q: Float32Array;
  /** Per KV head, [length, headDim]. */
  keys: Float32Array[];
  /** Per query head, [rows, length]: causal softmax(q k / sqrt(d)) of each window row. */
  probs: Float32Array[];
}

/** Random layer; KV heads get different key scales so their attention differs in sharpness. */
export function randomAttentionLayer(rand: () => number, shape: ModelShape, length: number, rows: number): DenseAttentionLayer {
  const d = shape.headDim;
  const G = shape.numHeads / shape.numKvHeads;
  const q = Float32Array.from({ length: rows * shape.numHeads * d }, () => rand() * 2 - 1);
  const keys = Array.from({ length: shape.numKvHeads }, (_, h) => {
    const scale = 1 + 2 * h + 2 * rand();
    return Float32Array.from({ length: length * d }, () => (rand() * 2 - 1) * scale);
  });
  const probs = Array.from({ length: shape.numHeads }, (_, qh) => {
    const k = keys[Math.floor(qh / G)]!;
    const out = new Float32Array(rows * length);
    for (let r = 0; r < rows; r++) {
      const pos = length - rows + r;
      const logits: number[] = [];
      for (let j = 0; j <= pos; j++) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[r * shape.numHeads * d + qh * d + i]! * k[j * d + i]!;
        logits.push(dot / Math.sqrt(d));
      }
      const max = Math.max(...logits);
      const e = logits.map((x) => Math.exp(x - max));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let j = 0; j <= pos; j++) out[r * length + j] = e[j]! / sum;
    }
    return out;
  });
  return { shape, length, rows, q, keys, probs };
}

/** The LayerView a session would build: per KV head (group = G), or per query head once expanded (group = 1). */
export function attentionLayerView(x: DenseAttentionLayer, layer: number, expanded: boolean): LayerView {
  const { shape, length, rows } = x;
  const G = shape.numHeads / shape.numKvHeads;
  const group = expanded ? 1 : G;
  const kvOf = (h: number): number => (expanded ? Math.floor(h / G) : h);
  const positions = Int32Array.from({ length }, (_, i) => i);
  return {
    layer,
    shape,
    heads: expanded ? shape.numHeads : shape.numKvHeads,
    group,
    promptLength: length,
    length: () => length,
    positions: () => positions,
    keys: (h) => x.keys[kvOf(h)]!,
    windowQueries: x.q,
    windowRows: rows,
    windowProbs: (h, w) => {
      if (w > rows) throw new RangeError(`window of ${w} asked, ${rows} kept`);
      const out = new Float32Array(group * w * length);
      for (let g = 0; g < group; g++) {
        const qh = expanded ? h : h * G + g;
        out.set(x.probs[qh]!.subarray((rows - w) * length, rows * length), g * w * length);
      }
      return out;
    },
  };
}

/** A PlanContext for heads whose slots are positions 0..length-1. */
export function densePlanContext(shape: ModelShape, lengths: number[][], budget: number): PlanContext {
  return {
    shape,
    budget,
    blockSlots: 16,
    lengths,
    positions: lengths.map((layer) => layer.map((n) => Int32Array.from({ length: n }, (_, i) => i))),
    tokensSeen: Math.max(0, ...lengths.flat()),
  };
}
// --- end dense attention layers -------------------------------------------------------------

/**
 * Calls `check` on every selection the session makes, through whichever hook the forward pass
 * uses (one head at a time, or a layer's heads at once).
 */
export function onEverySelection(session: CompressionSession, check: (layer: number, h: number, q: Float32Array, group: number, picked: Selection) => void): void {
  const one = session.select.bind(session);
  const many = session.selectHeads.bind(session);
  session.select = (layer, h, q, group) => {
    const picked = one(layer, h, q, group);
    check(layer, h, q, group, picked);
    return picked;
  };
  session.selectHeads = (layer, qs, group) => {
    const picked = many(layer, qs, group);
    picked.forEach((p, h) => check(layer, h, qs[h]!, group, p));
    return picked;
  };
}

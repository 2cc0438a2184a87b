// --- decode-time selector views (quest, sparq, hybrid, exact_topk tests) --------------------
import type { SelectView } from '../../src/compress/press.ts';
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

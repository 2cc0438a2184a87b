import type { ReadStats, SequenceKV } from '../kv/store.ts';

/** KV accounting of one sequence, measured on the store (never a method's own claim). */
export interface KvReport {
  method: string;
  budget: number;
  /** KVs (slots) stored per stored head at the end: min, mean, max. */
  kvsPerHead: { min: number; mean: number; max: number };
  /**
   * KVs stored by each stored head at the end, layer-major (`kvs[layer * heads + head]`); `heads`
   * is the KV heads, or the query heads for methods that keep a cache per query head.
   */
  perHead: { layers: number; heads: number; kvs: number[] };
  /** Bytes of the blocks the sequence holds now. */
  storedBytes: number;
  /** Bytes the full cache would hold for the same tokens (whole blocks per KV head). */
  fullBytes: number;
  /** fullBytes / storedBytes. */
  compressionRatio: number;
  /** Bytes of page summaries held beside the blocks. */
  summaryBytes: number;
  /** The pool's peak bytes during the request. */
  poolPeakBytes: number;
  /** The pool's peak bytes during the decode phase (after prefill and its eviction). */
  poolPeakDecodeBytes: number;
  /** The pool's bytes in use at the end (all sequences), as the pool counts them. */
  poolInUseBytes: number;
  /** What the kept slots need: ceil(slots / block) blocks per head. */
  keptSlotsBlockBytes: number;
  /** Average bytes read per decode step by attention (K, V) and by selection (K channels, summaries). */
  readPerStep: { k: number; v: number; summaries: number; total: number };
  /** Eviction passes (prefill end + continual). */
  evictions: number;
}

export function kvReport(seq: SequenceKV, method: string, budget: number, peaks: { request: number; decode: number }, evictions: number, reads: ReadStats = seq.reads): KvReport {
  const lengths = seq.lengths();
  let min = Infinity;
  let max = 0;
  let sum = 0;
  for (const n of lengths) { min = Math.min(min, n); max = Math.max(max, n); sum += n; }
  const storedBytes = seq.blockBytes();
  const fullBlocksPerHead = Math.ceil(seq.nextPosition / seq.pool.blockSlots);
  const fullBytes = fullBlocksPerHead * seq.layers * seq.kvHeads * seq.pool.blockBytes;
  const steps = Math.max(1, reads.steps);
  const k = reads.kBytes / steps;
  const v = reads.vBytes / steps;
  const summaries = reads.summaryBytes / steps;
  let keptBlocks = 0;
  for (const n of lengths) keptBlocks += Math.ceil(n / seq.pool.blockSlots);
  return {
    method,
    budget,
    kvsPerHead: { min: lengths.length ? min : 0, mean: lengths.length ? sum / lengths.length : 0, max },
    perHead: { layers: seq.layers, heads: lengths.length / seq.layers, kvs: Array.from(lengths) },
    storedBytes,
    fullBytes,
    compressionRatio: storedBytes > 0 ? fullBytes / storedBytes : 1,
    summaryBytes: seq.summaryBytes(),
    poolPeakBytes: peaks.request,
    poolPeakDecodeBytes: peaks.decode,
    poolInUseBytes: seq.pool.bytesInUse,
    keptSlotsBlockBytes: keptBlocks * seq.pool.blockBytes,
    readPerStep: { k, v, summaries, total: k + v + summaries },
    evictions,
  };
}

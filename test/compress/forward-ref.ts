/**
 * What the end-to-end tests below the prompt share: the full cache and query rows the model itself
 * produces for a prompt, a method's session prefilled on it, and the f64 window attention and
 * pooling their brute-force references are written with.
 */
import type { Engine } from '../../src/engine/engine.ts';
import { CompressionSession } from '../../src/compress/session.ts';
import { createCompression, resolveCompression, type CompressionRequest } from '../../src/compress/registry.ts';
import type { SequenceKV } from '../../src/kv/store.ts';

export function forwardRef(getEngine: () => Engine, tokens: number[], blockSlots: number) {
  const L = tokens.length;
  const shape = () => {
    const c = getEngine().config;
    return { numLayers: c.numLayers, numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim };
  };
  return {
    shape,
    /** The full cache after prefill: per layer, the query rows [L, Hq*d] and per KV head the keys [L, d]. */
    captureFull(): { q: Float32Array[]; keys: Float32Array[][] } {
      const engine = getEngine();
      const seq = engine.newSequence();
      const q: Float32Array[] = [];
      const hooks = { onQueries: (layer: number, rows: Float32Array) => { q[layer] = rows.slice(); } };
      engine.model.forward([{ seq, tokens, hooks }]);
      const keys = Array.from({ length: engine.config.numLayers }, (_, l) => Array.from({ length: engine.config.numKvHeads }, (_, h) => seq.readKeys(l, h)));
      seq.release();
      return { q, keys };
    },
    /** A method's session, prefilled on the prompt and evicted. */
    prefillWith(req: CompressionRequest, maxNew = 8): { seq: SequenceKV; session: CompressionSession } {
      const engine = getEngine();
      const kv = resolveCompression(req);
      const seq = engine.newSequence();
      const session = new CompressionSession(
        seq,
        createCompression(kv, { promptLength: L, maxNewTokens: maxNew, shape: shape(), maxPositionEmbeddings: 2048, blockSlots }),
        shape(),
        kv.budget,
      );
      engine.model.forward([{ seq, tokens, hooks: session }]);
      session.afterPrefill(L);
      return { seq, session };
    },
    /** Causal softmax of the last W queries of query head qh over all L keys: [W][L]. */
    windowProbs(q: Float32Array, keys: Float32Array, qh: number, W: number): Float64Array[] {
      const d = getEngine().config.headDim;
      const Hq = getEngine().config.numHeads;
      const out: Float64Array[] = [];
      for (let r = L - W; r < L; r++) {
        const row = new Float64Array(L);
        let max = -Infinity;
        for (let j = 0; j <= r; j++) {
          let dot = 0;
          for (let i = 0; i < d; i++) dot += q[r * Hq * d + qh * d + i]! * keys[j * d + i]!;
          row[j] = dot / Math.sqrt(d);
          max = Math.max(max, row[j]!);
        }
        let sum = 0;
        for (let j = 0; j <= r; j++) sum += row[j] = Math.exp(row[j]! - max);
        for (let j = 0; j <= r; j++) row[j]! /= sum;
        for (let j = r + 1; j < L; j++) row[j] = 0;
        out.push(row);
      }
      return out;
    },
    /** Positions held by stored head h of a layer (one per query head once expanded), ascending. */
    keptPositions(seq: SequenceKV, layer: number, h: number): number[] {
      const head = seq.headsIn(layer)[h]!;
      return Array.from(head.positions.subarray(0, head.length)).sort((a, b) => a - b);
    },
  };
}

/** Same-padded 1-D pooling, stride 1: max ignores the padding, avg counts it as zeros (divides by the kernel). */
export function pool(s: number[], kernel: number, kind: 'max' | 'avg'): number[] {
  const pad = (kernel - 1) / 2;
  return s.map((_, i) => {
    let m = -Infinity;
    let sum = 0;
    for (let j = i - pad; j <= i + pad; j++) {
      const v = j >= 0 && j < s.length ? s[j]! : 0;
      if (j >= 0 && j < s.length) m = Math.max(m, v);
      sum += v;
    }
    return kind === 'max' ? m : sum / kernel;
  });
}

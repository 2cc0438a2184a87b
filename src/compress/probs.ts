import type { Runtime } from '../runtime/wasm.ts';

/**
 * Attention probabilities for scoring (prefill observation windows, decode observation) on the
 * wasm kernels: one GEMM of the query rows against a head's keys, a causal mask by original
 * position (a query at position p sees slots with position <= p), and a row softmax.
 * Returns [rows, length], row r for the query at `qOffsets[r]` of `q`.
 */
export function attentionProbs(
  rt: Runtime, q: Float32Array, qOffsets: ArrayLike<number>, qPositions: ArrayLike<number>,
  keys: Float32Array, positions: Int32Array, length: number, d: number,
): Float32Array {
  const rows = qOffsets.length;
  if (rows === 0 || length === 0) return new Float32Array(rows * length);
  const scale = 1 / Math.sqrt(d);
  const qPtr = rt.alloc(rows * d * 4, 64);
  const kPtr = rt.alloc(length * d * 4, 64);
  const outPtr = rt.alloc(rows * length * 4, 64);
  try {
    const qb = rt.f32(qPtr, rows * d);
    for (let r = 0; r < rows; r++) {
      const o = qOffsets[r]!;
      for (let i = 0; i < d; i++) qb[r * d + i] = q[o + i]! * scale;
    }
    rt.f32(kPtr, length * d).set(keys.subarray(0, length * d));
    rt.k.matmul(outPtr, qPtr, kPtr, 0, rows, d, length);
    const out = rt.f32(outPtr, rows * length);
    for (let r = 0; r < rows; r++) {
      // Positions ascend: everything from the first slot past the query's position is masked.
      let lo = 0;
      let hi = length;
      const p = qPositions[r]!;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (positions[mid]! <= p) lo = mid + 1;
        else hi = mid;
      }
      out.fill(-Infinity, r * length + lo, (r + 1) * length);
    }
    rt.k.softmax(outPtr, rows, length);
    return rt.f32(outPtr, rows * length).slice();
  } finally {
    rt.free(outPtr);
    rt.free(kPtr);
    rt.free(qPtr);
  }
}

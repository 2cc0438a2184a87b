/**
 * Attention probabilities from dense queries and keys, for scoring (prefill windows, decode
 * observation). Causal by original position: a query at position p sees slots with position <= p.
 */
export function attentionProbs(
  q: Float32Array, qOffsets: ArrayLike<number>, qPositions: ArrayLike<number>,
  keys: Float32Array, positions: Int32Array, length: number, d: number,
): Float32Array {
  const rows = qOffsets.length;
  const out = new Float32Array(rows * length);
  const scale = 1 / Math.sqrt(d);
  for (let r = 0; r < rows; r++) {
    const qo = qOffsets[r]!;
    const qp = qPositions[r]!;
    const row = out.subarray(r * length, (r + 1) * length);
    let max = -Infinity;
    for (let s = 0; s < length; s++) {
      if (positions[s]! > qp) { row[s] = -Infinity; continue; }
      let dot = 0;
      const ko = s * d;
      for (let i = 0; i < d; i++) dot += q[qo + i]! * keys[ko + i]!;
      row[s] = dot * scale;
      if (row[s]! > max) max = row[s]!;
    }
    let sum = 0;
    for (let s = 0; s < length; s++) {
      const e = row[s] === -Infinity ? 0 : Math.exp(row[s]! - max);
      row[s] = e;
      sum += e;
    }
    for (let s = 0; s < length; s++) row[s] = row[s]! / sum;
  }
  return out;
}

// Attention kernels. Scores are exact softmax(q·k*scale); keys are processed in chunks so the
// key count is bounded only by memory.
import { axpy, dot, scale as scaleVec, threadScratch, threadScratchBytes, zero } from './common';

/**
 * Dense causal GQA attention over items [start, end) of T*Hq (query row, head) pairs.
 * Items are ordered short-row/long-row alternately so contiguous ranges carry similar work.
 */
export function attnCausal(out: usize, q: usize, k: usize, v: usize, T: i32, S: i32, Hq: i32, Hkv: i32, d: i32, scale: f32, start: i32, end: i32): void {
  const group = Hq / Hkv;
  const chunk = <i32>min<usize>(512, threadScratchBytes >> 2);
  const scores = threadScratch;
  const kvRow = (<usize>Hkv * <usize>d) << 2;
  const qRow = (<usize>Hq * <usize>d) << 2;
  const headBytes = <usize>d << 2;
  for (let it = start; it < end; it++) {
    const p = it / Hq;
    const h = it - p * Hq;
    const t = (p & 1) == 0 ? p >> 1 : T - 1 - (p >> 1);
    const kh = h / group;
    const qp = q + <usize>t * qRow + <usize>h * headBytes;
    const op = out + <usize>t * qRow + <usize>h * headBytes;
    const kBase = k + <usize>kh * headBytes;
    const vBase = v + <usize>kh * headBytes;
    const nVis = S - T + t + 1;
    zero(op, d);
    let m: f32 = -Infinity;
    let l: f32 = 0;
    for (let c0 = 0; c0 < nVis; c0 += chunk) {
      const cn = min(chunk, nVis - c0);
      let cmax: f32 = -Infinity;
      for (let j = 0; j < cn; j++) {
        const s = dot(qp, kBase + <usize>(c0 + j) * kvRow, d) * scale;
        store<f32>(scores + (<usize>j << 2), s);
        cmax = max(cmax, s);
      }
      if (cmax > m) {
        // Rescale what was accumulated under the old maximum.
        const corr = Mathf.exp(m - cmax);
        if (l != 0) scaleVec(op, corr, d);
        l *= corr;
        m = cmax;
      }
      for (let j = 0; j < cn; j++) {
        const e = Mathf.exp(load<f32>(scores + (<usize>j << 2)) - m);
        l += e;
        axpy(op, vBase + <usize>(c0 + j) * kvRow, e, d);
      }
    }
    if (l > 0) scaleVec(op, <f32>1 / l, d);
  }
}

/**
 * Paged attention over jobs [start, end). Job fields (i32 x8): qPtr, outPtr, tablePtr, nKeys,
 * slotsPtr, nRows, scratchPtr, 0. Slot s is in block table[s / blockSlots] at s % blockSlots;
 * a block holds K [blockSlots, d] then V [blockSlots, d].
 */
export function attendPaged(jobs: usize, pool: usize, blockSlots: i32, d: i32, G: i32, rowStride: i32, scale: f32, start: i32, end: i32): void {
  const headBytes = <usize>d << 2;
  const vOffset = <usize>blockSlots * headBytes;
  const blockBytes = vOffset << 1;
  const rowBytes = <usize>rowStride << 2;
  for (let j = start; j < end; j++) {
    const jp = jobs + (<usize>j << 5);
    const qPtr = <usize>load<u32>(jp);
    const outPtr = <usize>load<u32>(jp, 4);
    const table = <usize>load<u32>(jp, 8);
    const nKeys = load<i32>(jp, 12);
    const slots = <usize>load<u32>(jp, 16);
    const nRows = load<i32>(jp, 20);
    const scores = <usize>load<u32>(jp, 24);
    for (let r = 0; r < nRows; r++) {
      const nVis = nKeys - nRows + r + 1;
      for (let g = 0; g < G; g++) {
        const qp = qPtr + <usize>r * rowBytes + <usize>g * headBytes;
        const op = outPtr + <usize>r * rowBytes + <usize>g * headBytes;
        zero(op, d);
        if (nVis <= 0) continue;
        let m: f32 = -Infinity;
        if (slots == 0) {
          // Dense prefix: walk blocks in order without dividing per key.
          let i = 0;
          for (let b = 0; i < nVis; b++) {
            const kb = pool + <usize>load<u32>(table + (<usize>b << 2)) * blockBytes;
            const cnt = min(blockSlots, nVis - i);
            for (let o = 0; o < cnt; o++, i++) {
              const s = dot(qp, kb + <usize>o * headBytes, d) * scale;
              store<f32>(scores + (<usize>i << 2), s);
              m = max(m, s);
            }
          }
        } else {
          for (let i = 0; i < nVis; i++) {
            const s0 = load<u32>(slots + (<usize>i << 2));
            const blk = s0 / <u32>blockSlots;
            const off = s0 - blk * <u32>blockSlots;
            const kp = pool + <usize>load<u32>(table + (<usize>blk << 2)) * blockBytes + <usize>off * headBytes;
            const s = dot(qp, kp, d) * scale;
            store<f32>(scores + (<usize>i << 2), s);
            m = max(m, s);
          }
        }
        let l: f32 = 0;
        if (slots == 0) {
          let i = 0;
          for (let b = 0; i < nVis; b++) {
            const vb = pool + <usize>load<u32>(table + (<usize>b << 2)) * blockBytes + vOffset;
            const cnt = min(blockSlots, nVis - i);
            for (let o = 0; o < cnt; o++, i++) {
              const e = Mathf.exp(load<f32>(scores + (<usize>i << 2)) - m);
              l += e;
              axpy(op, vb + <usize>o * headBytes, e, d);
            }
          }
        } else {
          for (let i = 0; i < nVis; i++) {
            const s0 = load<u32>(slots + (<usize>i << 2));
            const blk = s0 / <u32>blockSlots;
            const off = s0 - blk * <u32>blockSlots;
            const vp = pool + <usize>load<u32>(table + (<usize>blk << 2)) * blockBytes + vOffset + <usize>off * headBytes;
            const e = Mathf.exp(load<f32>(scores + (<usize>i << 2)) - m);
            l += e;
            axpy(op, vp, e, d);
          }
        }
        scaleVec(op, <f32>1 / l, d);
      }
    }
  }
}

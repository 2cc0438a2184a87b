// Attention kernels. Exact softmax(q·k*scale)·V with an online softmax over key chunks, so the
// key count is bounded only by memory. The G query heads that share a KV head are processed
// together: each key and value row is fetched once per chunk for all of them.
import { dot, hsum4, threadScratch, threadScratchBytes } from './common';

/** f32x4 e^x (Cephes-style: 2^n split plus degree-5 polynomial, ~2 ulp). */
// @ts-ignore: decorator
@inline function exp4(x0: v128): v128 {
  const x1 = f32x4.max(f32x4.min(x0, f32x4.splat(88.3762626647949)), f32x4.splat(-87.3365478515625));
  const fx = f32x4.nearest(f32x4.mul(x1, f32x4.splat(1.44269504088896341)));
  let x = f32x4.sub(x1, f32x4.mul(fx, f32x4.splat(0.693359375)));
  x = f32x4.sub(x, f32x4.mul(fx, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, x), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, x), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, x), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, x), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, x), f32x4.splat(5.0000001201e-1));
  const y = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, x), x), x), f32x4.splat(1));
  const pow2n = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(fx), i32x4.splat(127)), 23);
  return f32x4.mul(y, pow2n);
}

/** Keys per chunk for G heads within the thread scratch (scores G*C, key addresses C, m and l G each). */
// @ts-ignore: decorator
@inline function chunkKeys(G: i32): i32 {
  const c = <i32>((threadScratchBytes - (<usize>G << 3)) / ((<usize>G << 2) + 4));
  return min(256, c & ~3);
}

// Scratch layout: [scores: G*C f32][addrs: C u32][m: G f32][l: G f32].

function groupBegin(op: usize, G: i32, d: i32, C: i32): void {
  memory.fill(op, 0, (<usize>G * <usize>d) << 2);
  const mp = threadScratch + ((<usize>G * <usize>C + <usize>C) << 2);
  const lp = mp + (<usize>G << 2);
  for (let g = 0; g < G; g++) {
    store<f32>(mp + (<usize>g << 2), -Infinity);
    store<f32>(lp + (<usize>g << 2), 0);
  }
}

/**
 * One chunk of cn keys whose addresses are in the scratch address list (value row = key row +
 * vOffset) for G heads: scores, online-softmax rescale, then out_g += p_gj * v_j.
 */
function groupChunk(qp: usize, op: usize, G: i32, d: i32, C: i32, cn: i32, scale: f32, vOffset: usize): void {
  const scores = threadScratch;
  const addrs = scores + ((<usize>G * <usize>C) << 2);
  const mp = addrs + (<usize>C << 2);
  const lp = mp + (<usize>G << 2);
  const headBytes = <usize>d << 2;
  // Scores four keys at a time per head: each q vector load feeds four keys, and the 4x4
  // transpose-sum yields the four scores as one vector.
  const cn4 = cn & ~3;
  const d4 = d & ~3;
  const sv = f32x4.splat(scale);
  for (let g = 0; g < G; g++) {
    const qg = qp + <usize>g * headBytes;
    const sg = scores + ((<usize>g * <usize>C) << 2);
    let j = 0;
    for (; j < cn4; j += 4) {
      const ap = addrs + (<usize>j << 2);
      const k0 = <usize>load<u32>(ap), k1 = <usize>load<u32>(ap, 4), k2 = <usize>load<u32>(ap, 8), k3 = <usize>load<u32>(ap, 12);
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let o: usize = 0; o < (<usize>d4 << 2); o += 16) {
        const qv = v128.load(qg + o);
        a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(k0 + o)));
        a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(k1 + o)));
        a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(k2 + o)));
        a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(k3 + o)));
      }
      let r = hsum4(a0, a1, a2, a3);
      for (let i = d4; i < d; i++) {
        const o = <usize>i << 2;
        r = f32x4.add(r, f32x4.mul(f32x4.splat(load<f32>(qg + o)), f32x4(load<f32>(k0 + o), load<f32>(k1 + o), load<f32>(k2 + o), load<f32>(k3 + o))));
      }
      v128.store(sg + (<usize>j << 2), f32x4.mul(r, sv));
    }
    for (; j < cn; j++) {
      store<f32>(sg + (<usize>j << 2), dot(qg, <usize>load<u32>(addrs + (<usize>j << 2)), d) * scale);
    }
  }
  for (let g = 0; g < G; g++) {
    const sg = scores + ((<usize>g * <usize>C) << 2);
    let cmax: f32 = -Infinity;
    for (let j = 0; j < cn; j++) cmax = max(cmax, load<f32>(sg + (<usize>j << 2)));
    let m = load<f32>(mp + (<usize>g << 2));
    let l = load<f32>(lp + (<usize>g << 2));
    const og = op + <usize>g * headBytes;
    if (cmax > m) {
      // Rescale what was accumulated under the old maximum.
      const corr = Mathf.exp(m - cmax);
      if (l != 0) {
        const cv = f32x4.splat(corr);
        let i = 0;
        for (; i + 4 <= d; i += 4) v128.store(og + (<usize>i << 2), f32x4.mul(v128.load(og + (<usize>i << 2)), cv));
        for (; i < d; i++) store<f32>(og + (<usize>i << 2), load<f32>(og + (<usize>i << 2)) * corr);
      }
      l *= corr;
      m = cmax;
      store<f32>(mp + (<usize>g << 2), m);
    }
    const mv = f32x4.splat(m);
    let lv = f32x4.splat(0);
    let j = 0;
    for (; j < cn4; j += 4) {
      const e = exp4(f32x4.sub(v128.load(sg + (<usize>j << 2)), mv));
      v128.store(sg + (<usize>j << 2), e);
      lv = f32x4.add(lv, e);
    }
    for (; j < cn; j++) {
      const e = Mathf.exp(load<f32>(sg + (<usize>j << 2)) - m);
      store<f32>(sg + (<usize>j << 2), e);
      l += e;
    }
    l += f32x4.extract_lane(lv, 0) + f32x4.extract_lane(lv, 1) + f32x4.extract_lane(lv, 2) + f32x4.extract_lane(lv, 3);
    store<f32>(lp + (<usize>g << 2), l);
  }
  // out_g += sum_j p_gj v_j, 8 vectors of the head at a time held in registers across the chunk.
  for (let g = 0; g < G; g++) {
    const sg = scores + ((<usize>g * <usize>C) << 2);
    const og = op + <usize>g * headBytes;
    let i = 0;
    for (; i + 32 <= d; i += 32) {
      const oo = og + (<usize>i << 2);
      let a0 = v128.load(oo), a1 = v128.load(oo, 16), a2 = v128.load(oo, 32), a3 = v128.load(oo, 48);
      let a4 = v128.load(oo, 64), a5 = v128.load(oo, 80), a6 = v128.load(oo, 96), a7 = v128.load(oo, 112);
      for (let j = 0; j < cn; j++) {
        const vp = <usize>load<u32>(addrs + (<usize>j << 2)) + vOffset + (<usize>i << 2);
        const p = f32x4.splat(load<f32>(sg + (<usize>j << 2)));
        a0 = f32x4.add(a0, f32x4.mul(p, v128.load(vp)));
        a1 = f32x4.add(a1, f32x4.mul(p, v128.load(vp, 16)));
        a2 = f32x4.add(a2, f32x4.mul(p, v128.load(vp, 32)));
        a3 = f32x4.add(a3, f32x4.mul(p, v128.load(vp, 48)));
        a4 = f32x4.add(a4, f32x4.mul(p, v128.load(vp, 64)));
        a5 = f32x4.add(a5, f32x4.mul(p, v128.load(vp, 80)));
        a6 = f32x4.add(a6, f32x4.mul(p, v128.load(vp, 96)));
        a7 = f32x4.add(a7, f32x4.mul(p, v128.load(vp, 112)));
      }
      v128.store(oo, a0); v128.store(oo, a1, 16); v128.store(oo, a2, 32); v128.store(oo, a3, 48);
      v128.store(oo, a4, 64); v128.store(oo, a5, 80); v128.store(oo, a6, 96); v128.store(oo, a7, 112);
    }
    for (; i + 4 <= d; i += 4) {
      const oo = og + (<usize>i << 2);
      let a0 = v128.load(oo);
      for (let j = 0; j < cn; j++) {
        const vp = <usize>load<u32>(addrs + (<usize>j << 2)) + vOffset + (<usize>i << 2);
        a0 = f32x4.add(a0, f32x4.mul(f32x4.splat(load<f32>(sg + (<usize>j << 2))), v128.load(vp)));
      }
      v128.store(oo, a0);
    }
    for (; i < d; i++) {
      const oo = og + (<usize>i << 2);
      let a: f32 = load<f32>(oo);
      for (let j = 0; j < cn; j++) {
        a += load<f32>(sg + (<usize>j << 2)) * load<f32>(<usize>load<u32>(addrs + (<usize>j << 2)) + vOffset + (<usize>i << 2));
      }
      store<f32>(oo, a);
    }
  }
}

function groupEnd(op: usize, G: i32, d: i32, C: i32): void {
  const lp = threadScratch + ((<usize>G * <usize>C + <usize>C + <usize>G) << 2);
  for (let g = 0; g < G; g++) {
    const l = load<f32>(lp + (<usize>g << 2));
    const inv: f32 = l > 0 ? <f32>1 / l : 0;
    const og = op + ((<usize>g * <usize>d) << 2);
    for (let i = 0; i < d; i++) store<f32>(og + (<usize>i << 2), load<f32>(og + (<usize>i << 2)) * inv);
  }
}

/**
 * Dense causal GQA attention over items [start, end) of T*Hkv (query row, KV head) pairs.
 * Items alternate short and long rows so contiguous ranges carry similar work.
 */
export function attnCausal(out: usize, q: usize, k: usize, v: usize, T: i32, S: i32, Hq: i32, Hkv: i32, d: i32, scale: f32, start: i32, end: i32): void {
  const G = Hq / Hkv;
  const C = chunkKeys(G);
  const addrs = threadScratch + ((<usize>G * <usize>C) << 2);
  const kvRow = (<usize>Hkv * <usize>d) << 2;
  const qRow = (<usize>Hq * <usize>d) << 2;
  const headBytes = <usize>d << 2;
  const vOffset = v - k;
  for (let it = start; it < end; it++) {
    const p = it / Hkv;
    const kh = it - p * Hkv;
    const t = (p & 1) == 0 ? p >> 1 : T - 1 - (p >> 1);
    const qp = q + <usize>t * qRow + <usize>(kh * G) * headBytes;
    const op = out + <usize>t * qRow + <usize>(kh * G) * headBytes;
    const kBase = k + <usize>kh * headBytes;
    const nVis = S - T + t + 1;
    groupBegin(op, G, d, C);
    for (let c0 = 0; c0 < nVis; c0 += C) {
      const cn = min(C, nVis - c0);
      for (let j = 0; j < cn; j++) store<u32>(addrs + (<usize>j << 2), <u32>(kBase + <usize>(c0 + j) * kvRow));
      groupChunk(qp, op, G, d, C, cn, scale, vOffset);
    }
    groupEnd(op, G, d, C);
  }
}

/**
 * Paged attention over jobs [start, end). Job fields (i32 x8): qPtr, outPtr, tablePtr, nKeys,
 * slotsPtr, nRows, scratchPtr, 0. Slot s is in block table[s / blockSlots] at s % blockSlots;
 * a block holds K [blockSlots, d] then V [blockSlots, d]. (The job scratch is not needed: the
 * per-thread scratch holds one key chunk.)
 */
export function attendPaged(jobs: usize, pool: usize, blockSlots: i32, d: i32, G: i32, rowStride: i32, scale: f32, start: i32, end: i32): void {
  const C = chunkKeys(G);
  const addrs = threadScratch + ((<usize>G * <usize>C) << 2);
  const headBytes = <usize>d << 2;
  const vOffset = <usize>blockSlots * headBytes;
  const blockBytes = vOffset << 1;
  const rowBytes = <usize>rowStride << 2;
  for (let jb = start; jb < end; jb++) {
    const jp = jobs + (<usize>jb << 5);
    const qPtr = <usize>load<u32>(jp);
    const outPtr = <usize>load<u32>(jp, 4);
    const table = <usize>load<u32>(jp, 8);
    const nKeys = load<i32>(jp, 12);
    const slots = <usize>load<u32>(jp, 16);
    const nRows = load<i32>(jp, 20);
    for (let r = 0; r < nRows; r++) {
      const nVis = nKeys - nRows + r + 1;
      const qp = qPtr + <usize>r * rowBytes;
      const op = outPtr + <usize>r * rowBytes;
      groupBegin(op, G, d, C);
      for (let c0 = 0; c0 < nVis; c0 += C) {
        const cn = min(C, nVis - c0);
        for (let j = 0; j < cn; j++) {
          const s = slots == 0 ? <u32>(c0 + j) : load<u32>(slots + (<usize>(c0 + j) << 2));
          const blk = s / <u32>blockSlots;
          const off = s - blk * <u32>blockSlots;
          store<u32>(addrs + (<usize>j << 2), <u32>(pool + <usize>load<u32>(table + (<usize>blk << 2)) * blockBytes + <usize>off * headBytes));
        }
        groupChunk(qp, op, G, d, C, cn, scale, vOffset);
      }
      groupEnd(op, G, d, C);
    }
  }
}

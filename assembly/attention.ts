// Attention kernels. Exact softmax(q·k*scale)·V with an online softmax over key chunks, so the
// key count is bounded only by memory. The G query heads that share a KV head are processed
// together: each key and value row is fetched once per chunk for all of them. Within a chunk,
// keys run in sub-blocks of SUB_KEYS that every (row, head) pair reads while they are in L1, and
// the score loop touches the rows one sub-block ahead (touchSpread), so that at long contexts
// the fetches from memory overlap with the arithmetic instead of stalling it.
import { dot, hsum4, madd, threadScratch, threadScratchBytes } from './common';
import { JOB_BYTES, JOB_KEYS, JOB_OUT, JOB_Q, JOB_ROWS, JOB_SLOTS, JOB_TABLE } from '../src/kv/job';

/**
 * f32x4 e^x (Cephes-style: 2^n split plus degree-5 polynomial, ~2 ulp). n = round(x*log2(e)) is
 * taken by adding 1.5*2^23, which leaves n in the low mantissa bits, so the same sum also gives
 * the exponent field of 2^n; pmin/pmax are single instructions where min/max handle NaN and -0.
 */
// @ts-ignore: decorator
@inline function exp4(x0: v128): v128 {
  const x1 = f32x4.pmax(f32x4.pmin(x0, f32x4.splat(88.3762626647949)), f32x4.splat(-87.3365478515625));
  const t = madd(x1, f32x4.splat(1.44269504088896341), f32x4.splat(12582912));
  const fx = f32x4.sub(t, f32x4.splat(12582912));
  let x = f32x4.sub(x1, f32x4.mul(fx, f32x4.splat(0.693359375)));
  x = f32x4.sub(x, f32x4.mul(fx, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = madd(p, x, f32x4.splat(1.3981999507e-3));
  p = madd(p, x, f32x4.splat(8.3334519073e-3));
  p = madd(p, x, f32x4.splat(4.1665795894e-2));
  p = madd(p, x, f32x4.splat(1.6666665459e-1));
  p = madd(p, x, f32x4.splat(5.0000001201e-1));
  const y = f32x4.add(madd(f32x4.mul(p, x), x, x), f32x4.splat(1));
  // Only the low 9 bits of t + 127 survive the shift: (n + 127) << 23.
  const pow2n = i32x4.shl(i32x4.add(t, i32x4.splat(127)), 23);
  return f32x4.mul(y, pow2n);
}

/** Query rows per tile in paged attention: each key chunk is addressed and loaded once for all of them. */
const TILE_ROWS = 8;
/** Upper bound on keys per chunk: every (row, head) pair of a tile re-reads the chunk's keys and values, which should stay in cache. */
const MAX_CHUNK_KEYS = 256;
/** Keys per sub-block of a chunk that every (row, head) pair reads in turn while it is in L1. */
const SUB_KEYS = 32;

/**
 * Keys per chunk for P (row, head) pairs within the thread scratch: scores P*C, key addresses
 * C + SUB_KEYS (a chunk and the next one's first sub-block),
 * m and l P each.
 */
// @ts-ignore: decorator
@inline function chunkKeys(P: i32): i32 {
  const c = <i32>((threadScratchBytes - (<usize>P << 3) - (<usize>SUB_KEYS << 2)) / ((<usize>P << 2) + 4));
  return min(MAX_CHUNK_KEYS, c & ~3);
}

/**
 * WebAssembly has no prefetch instruction, so the attention chunks fetch ahead with plain loads:
 * one word of every cache line of a row, summed into this global so the loads are kept. A miss
 * they cause overlaps with arithmetic on rows already in cache.
 */
let touchSink: u32 = 0;

/**
 * Touch slot t of a sub-block [s0, s1) of a chunk whose address list holds `ahead` rows: the
 * value row of key s0 + t (read after the chunk's softmax) and the key row of s1 + t (read by the
 * next sub-block's scores, possibly the next chunk's first). The score loop takes one slot per
 * group of four keys and pair of (row, head) pairs, so the loads are spread over its arithmetic.
 */
// @ts-ignore: decorator
@inline function touchSpread(addrs: usize, t: i32, s0: i32, s1: i32, ahead: i32, vOffset: usize, rowBytes: usize): void {
  if (t >= SUB_KEYS) return;
  let acc: u32 = 0;
  const jv = s0 + t;
  if (jv < s1) {
    const vp = <usize>load<u32>(addrs + (<usize>jv << 2)) + vOffset;
    for (let o: usize = 0; o < rowBytes; o += 64) acc += load<u32>(vp + o);
  }
  const jk = s1 + t;
  if (jk < ahead) {
    const kp = <usize>load<u32>(addrs + (<usize>jk << 2));
    for (let o: usize = 0; o < rowBytes; o += 64) acc += load<u32>(kp + o);
  }
  touchSink += acc;
}

// A tile is R query rows (rowBytes apart) of G heads each: P = R*G (row, head) pairs, pair
// p = r*G + g. Scratch layout: [scores: P*C f32][addrs: C + SUB_KEYS u32][m: P f32][l: P f32].

/** The tile's key address list in the thread scratch. */
// @ts-ignore: decorator
@inline function scratchAddrs(P: i32, C: i32): usize {
  return threadScratch + ((<usize>P * <usize>C) << 2);
}

/** The tile's running maxima m (P f32) in the thread scratch; the sums l follow them. */
// @ts-ignore: decorator
@inline function scratchMax(P: i32, C: i32): usize {
  return scratchAddrs(P, C) + ((<usize>C + <usize>SUB_KEYS) << 2);
}

// @ts-ignore: decorator
@inline function pairOffset(p: i32, G: i32, rowBytes: usize, headBytes: usize): usize {
  const r = p / G;
  return <usize>r * rowBytes + <usize>(p - r * G) * headBytes;
}

function tileBegin(op: usize, rowBytes: usize, R: i32, G: i32, d: i32, C: i32): void {
  const P = R * G;
  for (let r = 0; r < R; r++) memory.fill(op + <usize>r * rowBytes, 0, (<usize>G * <usize>d) << 2);
  const mp = scratchMax(P, C);
  const lp = mp + (<usize>P << 2);
  for (let p = 0; p < P; p++) {
    store<f32>(mp + (<usize>p << 2), -Infinity);
    store<f32>(lp + (<usize>p << 2), 0);
  }
}

/**
 * One chunk of cn keys whose addresses are in the scratch address list (value row = key row +
 * vOffset) for a tile: scores, online-softmax rescale, then out_p += p_pj * v_j. Row r of the
 * tile sees the chunk's first vis0 + r keys (all cn when that is more); the rest count as -inf.
 * The address list holds `ahead` >= cn rows: those past cn start the next chunk and are only
 * touched (touchSpread).
 */
function tileChunk(qp: usize, op: usize, rowBytes: usize, R: i32, G: i32, d: i32, C: i32, cn: i32, ahead: i32, vis0: i32, scale: f32, vOffset: usize): void {
  const P = R * G;
  const scores = threadScratch;
  const addrs = scratchAddrs(P, C);
  const mp = scratchMax(P, C);
  const lp = mp + (<usize>P << 2);
  const headBytes = <usize>d << 2;
  const cBytes = <usize>C << 2;
  const dBytes4 = <usize>(d & ~3) << 2;
  const sv = f32x4.splat(scale);

  // Scores, two pairs by four keys at a time: each key vector load feeds both pairs, each query
  // vector load four keys, and the 4x4 transpose-sums yield four scores per pair as one vector.
  // Keys go in sub-blocks of SUB_KEYS that every pair reads in turn, so a sub-block is fetched
  // from memory once and then read from L1.
  let p = 0;
  for (let s0 = 0; s0 < cn; s0 += SUB_KEYS) {
    const s1 = min(cn, s0 + SUB_KEYS);
    const s14 = s0 + ((s1 - s0) & ~3);
    for (p = 0; p + 2 <= P; p += 2) {
      const qa = qp + pairOffset(p, G, rowBytes, headBytes);
      const qb = qp + pairOffset(p + 1, G, rowBytes, headBytes);
      const sa = scores + <usize>p * cBytes;
      const sb = sa + cBytes;
      let j = s0;
      for (; j < s14; j += 4) {
        touchSpread(addrs, ((p >> 1) * (SUB_KEYS >> 2)) + ((j - s0) >> 2), s0, s1, ahead, vOffset, headBytes);
        const ap = addrs + (<usize>j << 2);
        const k0 = <usize>load<u32>(ap), k1 = <usize>load<u32>(ap, 4), k2 = <usize>load<u32>(ap, 8), k3 = <usize>load<u32>(ap, 12);
        let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
        let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
        for (let o: usize = 0; o < dBytes4; o += 16) {
          const qva = v128.load(qa + o);
          const qvb = v128.load(qb + o);
          let kv = v128.load(k0 + o);
          a0 = madd(qva, kv, a0);
          b0 = madd(qvb, kv, b0);
          kv = v128.load(k1 + o);
          a1 = madd(qva, kv, a1);
          b1 = madd(qvb, kv, b1);
          kv = v128.load(k2 + o);
          a2 = madd(qva, kv, a2);
          b2 = madd(qvb, kv, b2);
          kv = v128.load(k3 + o);
          a3 = madd(qva, kv, a3);
          b3 = madd(qvb, kv, b3);
        }
        let ra = hsum4(a0, a1, a2, a3);
        let rb = hsum4(b0, b1, b2, b3);
        for (let i = d & ~3; i < d; i++) {
          const o = <usize>i << 2;
          const kv = f32x4(load<f32>(k0 + o), load<f32>(k1 + o), load<f32>(k2 + o), load<f32>(k3 + o));
          ra = madd(f32x4.splat(load<f32>(qa + o)), kv, ra);
          rb = madd(f32x4.splat(load<f32>(qb + o)), kv, rb);
        }
        v128.store(sa + (<usize>j << 2), f32x4.mul(ra, sv));
        v128.store(sb + (<usize>j << 2), f32x4.mul(rb, sv));
      }
      for (; j < s1; j++) {
        const kp = <usize>load<u32>(addrs + (<usize>j << 2));
        store<f32>(sa + (<usize>j << 2), dot(qa, kp, d) * scale);
        store<f32>(sb + (<usize>j << 2), dot(qb, kp, d) * scale);
      }
    }
    if (p < P) {
      const qa = qp + pairOffset(p, G, rowBytes, headBytes);
      const sa = scores + <usize>p * cBytes;
      let j = s0;
      for (; j < s14; j += 4) {
        touchSpread(addrs, ((p >> 1) * (SUB_KEYS >> 2)) + ((j - s0) >> 2), s0, s1, ahead, vOffset, headBytes);
        const ap = addrs + (<usize>j << 2);
        const k0 = <usize>load<u32>(ap), k1 = <usize>load<u32>(ap, 4), k2 = <usize>load<u32>(ap, 8), k3 = <usize>load<u32>(ap, 12);
        let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
        for (let o: usize = 0; o < dBytes4; o += 16) {
          const qv = v128.load(qa + o);
          a0 = madd(qv, v128.load(k0 + o), a0);
          a1 = madd(qv, v128.load(k1 + o), a1);
          a2 = madd(qv, v128.load(k2 + o), a2);
          a3 = madd(qv, v128.load(k3 + o), a3);
        }
        let ra = hsum4(a0, a1, a2, a3);
        for (let i = d & ~3; i < d; i++) {
          const o = <usize>i << 2;
          ra = madd(f32x4.splat(load<f32>(qa + o)), f32x4(load<f32>(k0 + o), load<f32>(k1 + o), load<f32>(k2 + o), load<f32>(k3 + o)), ra);
        }
        v128.store(sa + (<usize>j << 2), f32x4.mul(ra, sv));
      }
      for (; j < s1; j++) {
        store<f32>(sa + (<usize>j << 2), dot(qa, <usize>load<u32>(addrs + (<usize>j << 2)), d) * scale);
      }
    }
  }

  // Online softmax per pair over its visible keys; masked scores become probability 0.
  for (p = 0; p < P; p++) {
    const sp = scores + <usize>p * cBytes;
    const vis = min(cn, vis0 + p / G);
    if (vis <= 0) {
      memory.fill(sp, 0, <usize>cn << 2);
      continue;
    }
    if (vis < cn) memory.fill(sp + (<usize>vis << 2), 0, <usize>(cn - vis) << 2);
    const vis4 = vis & ~3;
    let cmax: f32 = -Infinity;
    let j = 0;
    if (vis4 > 0) {
      let mv4 = v128.load(sp);
      for (j = 4; j < vis4; j += 4) mv4 = f32x4.max(mv4, v128.load(sp + (<usize>j << 2)));
      cmax = max(max(f32x4.extract_lane(mv4, 0), f32x4.extract_lane(mv4, 1)), max(f32x4.extract_lane(mv4, 2), f32x4.extract_lane(mv4, 3)));
    }
    for (; j < vis; j++) cmax = max(cmax, load<f32>(sp + (<usize>j << 2)));
    let m = load<f32>(mp + (<usize>p << 2));
    let l = load<f32>(lp + (<usize>p << 2));
    if (cmax > m) {
      // Rescale what was accumulated under the old maximum.
      const corr = Mathf.exp(m - cmax);
      if (l != 0) {
        const og = op + pairOffset(p, G, rowBytes, headBytes);
        const cv = f32x4.splat(corr);
        let i = 0;
        for (; i + 4 <= d; i += 4) v128.store(og + (<usize>i << 2), f32x4.mul(v128.load(og + (<usize>i << 2)), cv));
        for (; i < d; i++) store<f32>(og + (<usize>i << 2), load<f32>(og + (<usize>i << 2)) * corr);
      }
      l *= corr;
      m = cmax;
      store<f32>(mp + (<usize>p << 2), m);
    }
    const mv = f32x4.splat(m);
    let lv = f32x4.splat(0);
    for (j = 0; j < vis4; j += 4) {
      const e = exp4(f32x4.sub(v128.load(sp + (<usize>j << 2)), mv));
      v128.store(sp + (<usize>j << 2), e);
      lv = f32x4.add(lv, e);
    }
    for (; j < vis; j++) {
      const e = Mathf.exp(load<f32>(sp + (<usize>j << 2)) - m);
      store<f32>(sp + (<usize>j << 2), e);
      l += e;
    }
    l += f32x4.extract_lane(lv, 0) + f32x4.extract_lane(lv, 1) + f32x4.extract_lane(lv, 2) + f32x4.extract_lane(lv, 3);
    store<f32>(lp + (<usize>p << 2), l);
  }

  // out_p += sum_j p_pj v_j: two pairs by four vectors of the head held in registers across the
  // chunk, so each value vector load feeds both pairs. Keys past a pair's last visible one have
  // probability 0 and are skipped. Keys go in sub-blocks of SUB_KEYS, as for the scores.
  for (let s0 = 0; s0 < cn; s0 += SUB_KEYS) {
    const s1 = min(cn, s0 + SUB_KEYS);
    for (p = 0; p + 2 <= P; p += 2) {
      const jn = min(s1, vis0 + (p + 1) / G);
      if (jn <= s0) continue;
      const oa = op + pairOffset(p, G, rowBytes, headBytes);
      const ob = op + pairOffset(p + 1, G, rowBytes, headBytes);
      const sa = scores + <usize>p * cBytes;
      const sb = sa + cBytes;
      let i = 0;
      for (; i + 16 <= d; i += 16) {
        const ia = oa + (<usize>i << 2), ib = ob + (<usize>i << 2);
        let a0 = v128.load(ia), a1 = v128.load(ia, 16), a2 = v128.load(ia, 32), a3 = v128.load(ia, 48);
        let b0 = v128.load(ib), b1 = v128.load(ib, 16), b2 = v128.load(ib, 32), b3 = v128.load(ib, 48);
        for (let j = s0; j < jn; j++) {
          const vp = <usize>load<u32>(addrs + (<usize>j << 2)) + vOffset + (<usize>i << 2);
          const pa = v128.load32_splat(sa + (<usize>j << 2));
          const pb = v128.load32_splat(sb + (<usize>j << 2));
          let vv = v128.load(vp);
          a0 = madd(pa, vv, a0);
          b0 = madd(pb, vv, b0);
          vv = v128.load(vp, 16);
          a1 = madd(pa, vv, a1);
          b1 = madd(pb, vv, b1);
          vv = v128.load(vp, 32);
          a2 = madd(pa, vv, a2);
          b2 = madd(pb, vv, b2);
          vv = v128.load(vp, 48);
          a3 = madd(pa, vv, a3);
          b3 = madd(pb, vv, b3);
        }
        v128.store(ia, a0); v128.store(ia, a1, 16); v128.store(ia, a2, 32); v128.store(ia, a3, 48);
        v128.store(ib, b0); v128.store(ib, b1, 16); v128.store(ib, b2, 32); v128.store(ib, b3, 48);
      }
      for (; i + 4 <= d; i += 4) {
        const ia = oa + (<usize>i << 2), ib = ob + (<usize>i << 2);
        let a0 = v128.load(ia), b0 = v128.load(ib);
        for (let j = s0; j < jn; j++) {
          const vv = v128.load(<usize>load<u32>(addrs + (<usize>j << 2)) + vOffset + (<usize>i << 2));
          a0 = madd(v128.load32_splat(sa + (<usize>j << 2)), vv, a0);
          b0 = madd(v128.load32_splat(sb + (<usize>j << 2)), vv, b0);
        }
        v128.store(ia, a0);
        v128.store(ib, b0);
      }
      for (; i < d; i++) {
        const ia = oa + (<usize>i << 2), ib = ob + (<usize>i << 2);
        let a: f32 = load<f32>(ia), b: f32 = load<f32>(ib);
        for (let j = s0; j < jn; j++) {
          const x = load<f32>(<usize>load<u32>(addrs + (<usize>j << 2)) + vOffset + (<usize>i << 2));
          a += load<f32>(sa + (<usize>j << 2)) * x;
          b += load<f32>(sb + (<usize>j << 2)) * x;
        }
        store<f32>(ia, a);
        store<f32>(ib, b);
      }
    }
    if (p < P) {
      const jn = min(s1, vis0 + p / G);
      if (jn > s0) {
        const og = op + pairOffset(p, G, rowBytes, headBytes);
        const sg = scores + <usize>p * cBytes;
        let i = 0;
        for (; i + 32 <= d; i += 32) {
          const oo = og + (<usize>i << 2);
          let a0 = v128.load(oo), a1 = v128.load(oo, 16), a2 = v128.load(oo, 32), a3 = v128.load(oo, 48);
          let a4 = v128.load(oo, 64), a5 = v128.load(oo, 80), a6 = v128.load(oo, 96), a7 = v128.load(oo, 112);
          for (let j = s0; j < jn; j++) {
            const vp = <usize>load<u32>(addrs + (<usize>j << 2)) + vOffset + (<usize>i << 2);
            const pv = v128.load32_splat(sg + (<usize>j << 2));
            a0 = madd(pv, v128.load(vp), a0);
            a1 = madd(pv, v128.load(vp, 16), a1);
            a2 = madd(pv, v128.load(vp, 32), a2);
            a3 = madd(pv, v128.load(vp, 48), a3);
            a4 = madd(pv, v128.load(vp, 64), a4);
            a5 = madd(pv, v128.load(vp, 80), a5);
            a6 = madd(pv, v128.load(vp, 96), a6);
            a7 = madd(pv, v128.load(vp, 112), a7);
          }
          v128.store(oo, a0); v128.store(oo, a1, 16); v128.store(oo, a2, 32); v128.store(oo, a3, 48);
          v128.store(oo, a4, 64); v128.store(oo, a5, 80); v128.store(oo, a6, 96); v128.store(oo, a7, 112);
        }
        for (; i + 4 <= d; i += 4) {
          const oo = og + (<usize>i << 2);
          let a0 = v128.load(oo);
          for (let j = s0; j < jn; j++) {
            const vp = <usize>load<u32>(addrs + (<usize>j << 2)) + vOffset + (<usize>i << 2);
            a0 = madd(v128.load32_splat(sg + (<usize>j << 2)), v128.load(vp), a0);
          }
          v128.store(oo, a0);
        }
        for (; i < d; i++) {
          const oo = og + (<usize>i << 2);
          let a: f32 = load<f32>(oo);
          for (let j = s0; j < jn; j++) {
            a += load<f32>(sg + (<usize>j << 2)) * load<f32>(<usize>load<u32>(addrs + (<usize>j << 2)) + vOffset + (<usize>i << 2));
          }
          store<f32>(oo, a);
        }
      }
    }
  }
}

function tileEnd(op: usize, rowBytes: usize, R: i32, G: i32, d: i32, C: i32): void {
  const P = R * G;
  const headBytes = <usize>d << 2;
  const lp = scratchMax(P, C) + (<usize>P << 2);
  for (let p = 0; p < P; p++) {
    const l = load<f32>(lp + (<usize>p << 2));
    const inv: f32 = l > 0 ? <f32>1 / l : 0;
    const og = op + pairOffset(p, G, rowBytes, headBytes);
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
  const addrs = scratchAddrs(G, C);
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
    tileBegin(op, qRow, 1, G, d, C);
    for (let c0 = 0; c0 < nVis; c0 += C) {
      const cn = min(C, nVis - c0);
      for (let j = 0; j < cn; j++) store<u32>(addrs + (<usize>j << 2), <u32>(kBase + <usize>(c0 + j) * kvRow));
      tileChunk(qp, op, qRow, 1, G, d, C, cn, cn, cn, scale, vOffset);
    }
    tileEnd(op, qRow, 1, G, d, C);
  }
}

/**
 * The K row addresses of keys [c0, c0 + cn) of a job into addrs (u32 each): key i is slot i, or
 * slots[i] when `slots` is set; slot s is in block table[s / blockSlots] at s % blockSlots.
 */
// @ts-ignore: decorator
@inline function chunkAddresses(addrs: usize, c0: i32, cn: i32, slots: usize, table: usize, pool: usize, blockSlots: i32, blockBytes: usize, headBytes: usize): void {
  if (slots == 0) {
    // Consecutive slots: walk the block table instead of dividing per key.
    let blk = <u32>c0 / <u32>blockSlots;
    let off = <u32>c0 - blk * <u32>blockSlots;
    let base = pool + <usize>load<u32>(table + (<usize>blk << 2)) * blockBytes;
    for (let j = 0; j < cn; j++) {
      if (off == <u32>blockSlots) {
        off = 0;
        blk++;
        base = pool + <usize>load<u32>(table + (<usize>blk << 2)) * blockBytes;
      }
      store<u32>(addrs + (<usize>j << 2), <u32>(base + <usize>off * headBytes));
      off++;
    }
  } else {
    for (let j = 0; j < cn; j++) {
      const s = load<u32>(slots + (<usize>(c0 + j) << 2));
      const blk = s / <u32>blockSlots;
      const off = s - blk * <u32>blockSlots;
      store<u32>(addrs + (<usize>j << 2), <u32>(pool + <usize>load<u32>(table + (<usize>blk << 2)) * blockBytes + <usize>off * headBytes));
    }
  }
}

/**
 * Paged attention over jobs [start, end). Job fields (src/kv/job.ts): qPtr, outPtr, tablePtr, nKeys,
 * slotsPtr, nRows, scratchPtr. Row r of a job (rowStride floats apart) sees the first
 * nKeys - nRows + r + 1 keys. Key i is slot i, or slots[i] when slotsPtr is set; slot s is in
 * block table[s / blockSlots] at s % blockSlots; a block holds K [blockSlots, d] then
 * V [blockSlots, d]. Rows run in tiles of TILE_ROWS that share each key chunk. (The job scratch
 * is not needed: the per-thread scratch holds one key chunk.)
 */
export function attendPaged(jobs: usize, pool: usize, blockSlots: i32, d: i32, G: i32, rowStride: i32, scale: f32, start: i32, end: i32): void {
  const headBytes = <usize>d << 2;
  const vOffset = <usize>blockSlots * headBytes;
  const blockBytes = vOffset << 1;
  const rowBytes = <usize>rowStride << 2;
  for (let jb = start; jb < end; jb++) {
    const jp = jobs + <usize>jb * JOB_BYTES;
    const qPtr = <usize>load<u32>(jp, JOB_Q * 4);
    const outPtr = <usize>load<u32>(jp, JOB_OUT * 4);
    const table = <usize>load<u32>(jp, JOB_TABLE * 4);
    const nKeys = load<i32>(jp, JOB_KEYS * 4);
    const slots = <usize>load<u32>(jp, JOB_SLOTS * 4);
    const nRows = load<i32>(jp, JOB_ROWS * 4);
    for (let r = 0; r < nRows; r += TILE_ROWS) {
      const R = min(TILE_ROWS, nRows - r);
      const C = chunkKeys(R * G);
      const addrs = scratchAddrs(R * G, C);
      const vis0 = nKeys - nRows + r + 1;
      const nVis = vis0 + R - 1;
      const qp = qPtr + <usize>r * rowBytes;
      const op = outPtr + <usize>r * rowBytes;
      tileBegin(op, rowBytes, R, G, d, C);
      for (let c0 = 0; c0 < nVis; c0 += C) {
        const cn = min(C, nVis - c0);
        const ahead = min(C + SUB_KEYS, nVis - c0);
        chunkAddresses(addrs, c0, ahead, slots, table, pool, blockSlots, blockBytes, headBytes);
        tileChunk(qp, op, rowBytes, R, G, d, C, cn, ahead, vis0 - c0, scale, vOffset);
      }
      tileEnd(op, rowBytes, R, G, d, C);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Decode attention split by key range: single-row jobs (a decode step) over `parts` key ranges
// each, so every thread has work however few KV heads there are. Item it = job * parts + part
// covers keys [part * nKeys / parts, (part + 1) * nKeys / parts) and writes, unnormalised, its
// G heads' output, running max and sum: partial + it * (G * d + 2 * G) floats, as
// out [G, d] | m [G] | l [G]. attendMerge then combines a job's parts into its output rows:
//   M = max_p m_p,  out = sum_p e^(m_p - M) o_p / sum_p e^(m_p - M) l_p.

export function attendPagedPart(jobs: usize, pool: usize, blockSlots: i32, d: i32, G: i32, scale: f32, parts: i32, partial: usize, start: i32, end: i32): void {
  const headBytes = <usize>d << 2;
  const vOffset = <usize>blockSlots * headBytes;
  const blockBytes = vOffset << 1;
  const rowBytes = <usize>G * headBytes;
  const itemBytes = (<usize>(G * d + 2 * G)) << 2;
  const C = chunkKeys(G);
  const addrs = scratchAddrs(G, C);
  const mp = scratchMax(G, C);
  const lp = mp + (<usize>G << 2);
  for (let it = start; it < end; it++) {
    const jb = it / parts;
    const part = it - jb * parts;
    const jp = jobs + <usize>jb * JOB_BYTES;
    const qPtr = <usize>load<u32>(jp, JOB_Q * 4);
    const table = <usize>load<u32>(jp, JOB_TABLE * 4);
    const nKeys = load<i32>(jp, JOB_KEYS * 4);
    const slots = <usize>load<u32>(jp, JOB_SLOTS * 4);
    const k0 = <i32>((<i64>part * <i64>nKeys) / <i64>parts);
    const k1 = <i32>((<i64>(part + 1) * <i64>nKeys) / <i64>parts);
    const op = partial + <usize>it * itemBytes;
    tileBegin(op, rowBytes, 1, G, d, C);
    for (let c0 = k0; c0 < k1; c0 += C) {
      const cn = min(C, k1 - c0);
      const ahead = min(C + SUB_KEYS, k1 - c0);
      chunkAddresses(addrs, c0, ahead, slots, table, pool, blockSlots, blockBytes, headBytes);
      tileChunk(qPtr, op, rowBytes, 1, G, d, C, cn, ahead, cn, scale, vOffset);
    }
    const ml = op + (<usize>(G * d) << 2);
    for (let g = 0; g < G; g++) {
      store<f32>(ml + (<usize>g << 2), load<f32>(mp + (<usize>g << 2)));
      store<f32>(ml + (<usize>(G + g) << 2), load<f32>(lp + (<usize>g << 2)));
    }
  }
}

export function attendMerge(jobs: usize, d: i32, G: i32, parts: i32, partial: usize, start: i32, end: i32): void {
  const itemBytes = (<usize>(G * d + 2 * G)) << 2;
  for (let jb = start; jb < end; jb++) {
    const outPtr = <usize>load<u32>(jobs + <usize>jb * JOB_BYTES, JOB_OUT * 4);
    const first = partial + <usize>(jb * parts) * itemBytes;
    for (let g = 0; g < G; g++) {
      let M: f32 = -Infinity;
      for (let p = 0; p < parts; p++) {
        M = max(M, load<f32>(first + <usize>p * itemBytes + (<usize>(G * d + g) << 2)));
      }
      const og = outPtr + (<usize>(g * d) << 2);
      memory.fill(og, 0, <usize>d << 2);
      let L: f32 = 0;
      if (M != -Infinity) {
        for (let p = 0; p < parts; p++) {
          const ip = first + <usize>p * itemBytes;
          const m = load<f32>(ip + (<usize>(G * d + g) << 2));
          if (m == -Infinity) continue;
          const e = Mathf.exp(m - M);
          L += e * load<f32>(ip + (<usize>(G * d + G + g) << 2));
          const ev = f32x4.splat(e);
          const src = ip + (<usize>(g * d) << 2);
          let i = 0;
          for (; i + 4 <= d; i += 4) v128.store(og + (<usize>i << 2), madd(ev, v128.load(src + (<usize>i << 2)), v128.load(og + (<usize>i << 2))));
          for (; i < d; i++) store<f32>(og + (<usize>i << 2), load<f32>(og + (<usize>i << 2)) + e * load<f32>(src + (<usize>i << 2)));
        }
      }
      const inv: f32 = L > 0 ? <f32>1 / L : 0;
      for (let i = 0; i < d; i++) store<f32>(og + (<usize>i << 2), load<f32>(og + (<usize>i << 2)) * inv);
    }
  }
}

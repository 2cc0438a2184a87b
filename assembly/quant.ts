// Int8 weights with one f32 scale per 32 values along K (GGUF Q8_0 layout, split in two arrays).
// Activations are quantized the same way but stored as i16 so the dot needs no widening of x.
import { dot, madd, threadScratch } from './common';
import { tile1x4, tile2x4 } from './gemm';

// @ts-ignore: decorator
@inline function absMax8(p: usize): f32 {
  const m = f32x4.max(
    f32x4.max(f32x4.abs(v128.load(p)), f32x4.abs(v128.load(p, 16))),
    f32x4.max(f32x4.abs(v128.load(p, 32)), f32x4.abs(v128.load(p, 48))),
  );
  const m2 = f32x4.max(
    f32x4.max(f32x4.abs(v128.load(p, 64)), f32x4.abs(v128.load(p, 80))),
    f32x4.max(f32x4.abs(v128.load(p, 96)), f32x4.abs(v128.load(p, 112))),
  );
  const a = f32x4.max(m, m2);
  const b = f32x4.max(a, v128.shuffle<f32>(a, a, 2, 3, 0, 1));
  return max(f32x4.extract_lane(b, 0), f32x4.extract_lane(b, 1));
}

/** 8 floats at p times inv, rounded to nearest, as an i16x8 (values within ±127). */
// @ts-ignore: decorator
@inline function round8(p: usize, inv: v128): v128 {
  const a = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p), inv)));
  const b = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 16), inv)));
  return i16x8.narrow_i32x4_s(a, b);
}

/** Quantize weight rows [start, end) of src [N,K] into qs (int8 [N,K]) and scales (f32 [N,K/32]). */
export function quantizeQ8Rows(qs: usize, scales: usize, src: usize, K: i32, start: i32, end: i32): void {
  const nb = K >> 5;
  for (let n = start; n < end; n++) {
    for (let b = 0; b < nb; b++) {
      const i = <usize>n * <usize>nb + <usize>b;
      const p = src + (i << 7);
      const amax = absMax8(p);
      const d: f32 = amax / 127;
      const inv = f32x4.splat(d != 0 ? <f32>1 / d : 0);
      const h0 = round8(p, inv);
      const h1 = round8(p + 32, inv);
      const h2 = round8(p + 64, inv);
      const h3 = round8(p + 96, inv);
      const q = qs + (i << 5);
      v128.store(q, i8x16.narrow_i16x8_s(h0, h1));
      v128.store(q, i8x16.narrow_i16x8_s(h2, h3), 16);
      store<f32>(scales + (i << 2), d);
    }
  }
}

/** Quantize activation rows [start, end) of x [M,K] into xq (i16 [M,K]) and xs (f32 [M,K/32]). */
export function quantizeActQ8(xq: usize, xs: usize, x: usize, K: i32, start: i32, end: i32): void {
  const nb = K >> 5;
  for (let m = start; m < end; m++) {
    for (let b = 0; b < nb; b++) {
      const i = <usize>m * <usize>nb + <usize>b;
      const p = x + (i << 7);
      const amax = absMax8(p);
      const d: f32 = amax / 127;
      const inv = f32x4.splat(d != 0 ? <f32>1 / d : 0);
      const q = xq + (i << 6);
      v128.store(q, round8(p, inv));
      v128.store(q, round8(p + 32, inv), 16);
      v128.store(q, round8(p + 64, inv), 32);
      v128.store(q, round8(p + 96, inv), 48);
      store<f32>(xs + (i << 2), d);
    }
  }
}

/** Integer dot of one 32-block: int8 weights at w (widened on load) with i16 activations at x. */
// @ts-ignore: decorator
@inline function blockDot(w: usize, x: usize): v128 {
  const p0 = i32x4.dot_i16x8_s(v128.load8x8_s(w), v128.load(x));
  const p1 = i32x4.dot_i16x8_s(v128.load8x8_s(w, 8), v128.load(x, 16));
  const p2 = i32x4.dot_i16x8_s(v128.load8x8_s(w, 16), v128.load(x, 32));
  const p3 = i32x4.dot_i16x8_s(v128.load8x8_s(w, 24), v128.load(x, 48));
  return i32x4.add(i32x4.add(p0, p1), i32x4.add(p2, p3));
}

// @ts-ignore: decorator
@inline function hsumF(a: v128): f32 {
  const s = f32x4.add(a, v128.shuffle<f32>(a, a, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

/**
 * Weight row at wr (scales sr) against one quantized x row (xr, scales tr): even blocks' scaled
 * integer dots on one accumulator, odd blocks' on another, then added. gemvQ8 and every row of
 * gemmQ8 sum this way.
 */
// @ts-ignore: decorator
@inline function rowQ8(wr: usize, sr: usize, xr: usize, tr: usize, nb: i32): f32 {
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0);
  // Pointer induction variables keep the loop to a few adds (V8 spills index arithmetic).
  let wp = wr, xp = xr, sp = sr, tp = tr;
  const wEnd = wr + (<usize>(nb & ~1) << 5);
  for (; wp < wEnd; wp += 64, xp += 128, sp += 8, tp += 8) {
    const i0 = blockDot(wp, xp);
    const i1 = blockDot(wp + 32, xp + 64);
    acc0 = madd(f32x4.convert_i32x4_s(i0), f32x4.splat(load<f32>(sp) * load<f32>(tp)), acc0);
    acc1 = madd(f32x4.convert_i32x4_s(i1), f32x4.splat(load<f32>(sp, 4) * load<f32>(tp, 4)), acc1);
  }
  if ((nb & 1) != 0) acc0 = madd(f32x4.convert_i32x4_s(blockDot(wp, xp)), f32x4.splat(load<f32>(sp) * load<f32>(tp)), acc0);
  return hsumF(f32x4.add(acc0, acc1));
}

/**
 * Matrix-vector with int8 weights over rows [start, end); x already quantized (xq, xs).
 * One row at a time so the weights stream strictly sequentially (rows are contiguous), two blocks
 * per step. Wider unrolls make V8 hoist every load and spill registers.
 */
export function gemvQ8(out: usize, xq: usize, xs: usize, wq: usize, ws: usize, bias: usize, K: i32, start: i32, end: i32): void {
  const nb = K >> 5;
  const sRow = <usize>nb << 2;
  for (let n = start; n < end; n++) {
    let s = rowQ8(wq + <usize>n * <usize>K, ws + <usize>n * sRow, xq, xs, nb);
    if (bias != 0) s += load<f32>(bias + (<usize>n << 2));
    store<f32>(out + (<usize>n << 2), s);
  }
}

const M_BLOCK_Q: i32 = 64;

/** Integer dot of one 32-block whose int8 weights were widened already (w0..w3) with i16 activations at x. */
// @ts-ignore: decorator
@inline function wideDot(w0: v128, w1: v128, w2: v128, w3: v128, x: usize): v128 {
  const p0 = i32x4.dot_i16x8_s(w0, v128.load(x));
  const p1 = i32x4.dot_i16x8_s(w1, v128.load(x, 16));
  const p2 = i32x4.dot_i16x8_s(w2, v128.load(x, 32));
  const p3 = i32x4.dot_i16x8_s(w3, v128.load(x, 48));
  return i32x4.add(i32x4.add(p0, p1), i32x4.add(p2, p3));
}

/**
 * Int8-weight GEMM over weight rows [start, end), for decode batches and other small row counts:
 * each weight block is widened once and reused by 4 x rows. Every x row sums its blocks as
 * rowQ8 does (even and odd blocks apart, then added), so a row's outputs are the bits gemvQ8 gives it alone:
 * decode steps of several sequences batched into one product equal each one's step run alone.
 */
export function gemmQ8(out: usize, xq: usize, xs: usize, wq: usize, ws: usize, bias: usize, M: i32, K: i32, N: i32, start: i32, end: i32): void {
  const nb = K >> 5;
  const xRow = <usize>K << 1;
  const sRow = <usize>nb << 2;
  const outRow = <usize>N << 2;
  for (let mb = 0; mb < M; mb += M_BLOCK_Q) {
    const mbEnd = min(M, mb + M_BLOCK_Q);
    for (let n = start; n < end; n++) {
      const wqn = wq + <usize>n * <usize>K;
      const wsn = ws + <usize>n * sRow;
      const bv: f32 = bias != 0 ? load<f32>(bias + (<usize>n << 2)) : 0;
      let m = mb;
      for (; m + 4 <= mbEnd; m += 4) {
        const x0 = xq + <usize>m * xRow;
        const s0 = xs + <usize>m * sRow;
        // eN / oN: even / odd blocks of row m + N (rowQ8's order).
        let e0 = f32x4.splat(0), e1 = f32x4.splat(0), e2 = f32x4.splat(0), e3 = f32x4.splat(0);
        let o0 = f32x4.splat(0), o1 = f32x4.splat(0), o2 = f32x4.splat(0), o3 = f32x4.splat(0);
        let wp = wqn, sp = wsn, xp = x0, tp = s0;
        const wEnd = wqn + (<usize>(nb & ~1) << 5);
        for (; wp < wEnd; wp += 64, xp += 128, sp += 8, tp += 8) {
          let w0 = v128.load8x8_s(wp), w1 = v128.load8x8_s(wp, 8), w2 = v128.load8x8_s(wp, 16), w3 = v128.load8x8_s(wp, 24);
          let sw = load<f32>(sp);
          e0 = madd(f32x4.convert_i32x4_s(wideDot(w0, w1, w2, w3, xp)), f32x4.splat(sw * load<f32>(tp)), e0);
          e1 = madd(f32x4.convert_i32x4_s(wideDot(w0, w1, w2, w3, xp + xRow)), f32x4.splat(sw * load<f32>(tp + sRow)), e1);
          e2 = madd(f32x4.convert_i32x4_s(wideDot(w0, w1, w2, w3, xp + 2 * xRow)), f32x4.splat(sw * load<f32>(tp + 2 * sRow)), e2);
          e3 = madd(f32x4.convert_i32x4_s(wideDot(w0, w1, w2, w3, xp + 3 * xRow)), f32x4.splat(sw * load<f32>(tp + 3 * sRow)), e3);
          w0 = v128.load8x8_s(wp, 32); w1 = v128.load8x8_s(wp, 40); w2 = v128.load8x8_s(wp, 48); w3 = v128.load8x8_s(wp, 56);
          sw = load<f32>(sp, 4);
          o0 = madd(f32x4.convert_i32x4_s(wideDot(w0, w1, w2, w3, xp + 64)), f32x4.splat(sw * load<f32>(tp, 4)), o0);
          o1 = madd(f32x4.convert_i32x4_s(wideDot(w0, w1, w2, w3, xp + xRow + 64)), f32x4.splat(sw * load<f32>(tp + sRow, 4)), o1);
          o2 = madd(f32x4.convert_i32x4_s(wideDot(w0, w1, w2, w3, xp + 2 * xRow + 64)), f32x4.splat(sw * load<f32>(tp + 2 * sRow, 4)), o2);
          o3 = madd(f32x4.convert_i32x4_s(wideDot(w0, w1, w2, w3, xp + 3 * xRow + 64)), f32x4.splat(sw * load<f32>(tp + 3 * sRow, 4)), o3);
        }
        if ((nb & 1) != 0) {
          const w0 = v128.load8x8_s(wp), w1 = v128.load8x8_s(wp, 8), w2 = v128.load8x8_s(wp, 16), w3 = v128.load8x8_s(wp, 24);
          const sw = load<f32>(sp);
          e0 = madd(f32x4.convert_i32x4_s(wideDot(w0, w1, w2, w3, xp)), f32x4.splat(sw * load<f32>(tp)), e0);
          e1 = madd(f32x4.convert_i32x4_s(wideDot(w0, w1, w2, w3, xp + xRow)), f32x4.splat(sw * load<f32>(tp + sRow)), e1);
          e2 = madd(f32x4.convert_i32x4_s(wideDot(w0, w1, w2, w3, xp + 2 * xRow)), f32x4.splat(sw * load<f32>(tp + 2 * sRow)), e2);
          e3 = madd(f32x4.convert_i32x4_s(wideDot(w0, w1, w2, w3, xp + 3 * xRow)), f32x4.splat(sw * load<f32>(tp + 3 * sRow)), e3);
        }
        const o = out + <usize>m * outRow + (<usize>n << 2);
        store<f32>(o, hsumF(f32x4.add(e0, o0)) + bv);
        store<f32>(o + outRow, hsumF(f32x4.add(e1, o1)) + bv);
        store<f32>(o + 2 * outRow, hsumF(f32x4.add(e2, o2)) + bv);
        store<f32>(o + 3 * outRow, hsumF(f32x4.add(e3, o3)) + bv);
      }
      for (; m < mbEnd; m++) {
        store<f32>(out + <usize>m * outRow + (<usize>n << 2), rowQ8(wqn, wsn, xq + <usize>m * xRow, xs + <usize>m * sRow, nb) + bv);
      }
    }
  }
}

/** Activation rows [start, end) dequantized to f32: xd[m,k] = xq[m,k] * xs[m, k/32], the values the int8 dot sees. */
export function dequantActQ8(xd: usize, xq: usize, xs: usize, K: i32, start: i32, end: i32): void {
  const nb = K >> 5;
  for (let m = start; m < end; m++) {
    for (let b = 0; b < nb; b++) {
      const i = <usize>m * <usize>nb + <usize>b;
      const d = f32x4.splat(load<f32>(xs + (i << 2)));
      const q = xq + (i << 6);
      const o = xd + (i << 7);
      // 8 i16 (16 bytes) in, 8 f32 (32 bytes) out per step.
      for (let j: usize = 0; j < 64; j += 16) {
        const h = v128.load(q + j);
        v128.store(o + (j << 1), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h)), d));
        v128.store(o + (j << 1), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h)), d), 16);
      }
    }
  }
}

/** Weight columns per panel of gemmQ8F: 4 rows x 256 f32 = 4 KB, kept in L1 while x rows stream. */
const KC_Q: i32 = 256;
/** x rows per block of gemmQ8F: 256 rows x KC_Q f32 = 256 KB, kept in L2 across the thread's panels (each panel is dequantized once per block). */
const MC_Q: i32 = 256;

/** Weight rows [n, n+rows) over columns [k0, k0+kc) dequantized to f32 at dst, row stride kc floats. */
// @ts-ignore: decorator
@inline function dequantPanel(dst: usize, wq: usize, ws: usize, K: i32, n: i32, rows: i32, k0: i32, kc: i32): void {
  const nb = K >> 5;
  for (let r = 0; r < rows; r++) {
    const wr = wq + <usize>(n + r) * <usize>K + <usize>k0;
    const sr = ws + ((<usize>(n + r) * <usize>nb + <usize>(k0 >> 5)) << 2);
    const dr = dst + ((<usize>r * <usize>kc) << 2);
    for (let k = 0; k < kc; k += 32) {
      const d = f32x4.splat(load<f32>(sr + (<usize>(k >> 5) << 2)));
      const src = wr + <usize>k;
      const o = dr + (<usize>k << 2);
      for (let j: usize = 0; j < 32; j += 8) {
        const h = v128.load8x8_s(src + j);
        v128.store(o + (j << 2), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h)), d));
        v128.store(o + (j << 2), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h)), d), 16);
      }
    }
  }
}

/** One x row by `rows` (1-4) panel rows over kc columns, added to out (or stored with bias when `first`). */
// @ts-ignore: decorator
@inline function panelRow(o: usize, x0: usize, p: usize, kc: i32, rows: i32, first: bool, bias: usize, n: i32): void {
  for (let j = 0; j < rows; j++) {
    let s = dot(x0, p + ((<usize>j * <usize>kc) << 2), kc);
    const oj = o + (<usize>j << 2);
    if (first) { if (bias != 0) s += load<f32>(bias + (<usize>(n + j) << 2)); } else s += load<f32>(oj);
    store<f32>(oj, s);
  }
}

/**
 * Int8-weight GEMM in f32 arithmetic over weight rows [start, end), for prefill and other M > 1
 * products: out[M,N] = xd[M,K] · dequant(w)^T (+ bias). xd holds the quantized activations'
 * values (dequantActQ8), so the products are those of gemmQ8 up to float rounding. Blocking: x in
 * MC_Q-row blocks, K in KC_Q-column slices; for each, every 4-row weight panel of the thread is
 * dequantized once into the thread's scratch and reused by all x rows of the block.
 */
export function gemmQ8F(out: usize, xd: usize, wq: usize, ws: usize, bias: usize, M: i32, K: i32, N: i32, start: i32, end: i32): void {
  const panel = threadScratch;
  const xRow = <usize>K << 2;
  const outRow = <usize>N << 2;
  for (let mb = 0; mb < M; mb += MC_Q) {
    const mbEnd = min(M, mb + MC_Q);
    const mEnd2 = mb + ((mbEnd - mb) & ~1);
    for (let k0 = 0; k0 < K; k0 += KC_Q) {
      const kc = min(KC_Q, K - k0);
      const first = k0 == 0;
      for (let n = start; n < end; n += 4) {
        const rows = min(4, end - n);
        dequantPanel(panel, wq, ws, K, n, rows, k0, kc);
        const xk = xd + (<usize>k0 << 2);
        if (rows == 4) {
          for (let m = mb; m < mEnd2; m += 2) {
            // The panel's rows are kc floats apart.
            tile2x4(out + <usize>m * outRow + (<usize>n << 2), outRow, xk + <usize>m * xRow, xRow, panel, <usize>kc << 2, kc, first, bias, n);
          }
          if (mEnd2 < mbEnd) tile1x4(out + <usize>mEnd2 * outRow + (<usize>n << 2), xk + <usize>mEnd2 * xRow, panel, <usize>kc << 2, kc, first, bias, n);
        } else {
          for (let m = mb; m < mbEnd; m++) panelRow(out + <usize>m * outRow + (<usize>n << 2), xk + <usize>m * xRow, panel, kc, rows, first, bias, n);
        }
      }
    }
  }
}

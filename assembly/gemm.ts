// f32 matrix products: out[M,N] = x[M,K] · w[N,K]^T (+ bias). w is HF Linear layout.
import { dot, hsum, hsum4, madd } from './common';

/** x rows kept hot in L2 while a thread sweeps its weight rows. */
const M_BLOCK: i32 = 64;

/**
 * The 2x4 micro-kernel: x rows x0 and x0 + xRow (bytes) by w rows w0 + j * wRow (j < 4) over k
 * floats. 8 f32x4 accumulators, then a transpose-sum gives each x row's 4 outputs as one vector.
 * 2x4 rather than 4x4: V8 loads every operand of an iteration up front, and 8 accumulators + 6
 * operands fit the 16 xmm registers where 4x4 spills. The two output vectors go to o0 and
 * o0 + outRow, plus bias[n..n+4) when bias != 0.
 */
// @ts-ignore: decorator
@inline function tile2x4(o0: usize, outRow: usize, x0: usize, xRow: usize, w0: usize, wRow: usize, k: i32, bias: usize, n: i32): void {
  const x1 = x0 + xRow;
  const w1 = w0 + wRow;
  const w2 = w1 + wRow;
  const w3 = w2 + wRow;
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c02 = f32x4.splat(0), c03 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0), c12 = f32x4.splat(0), c13 = f32x4.splat(0);
  const kEnd = <usize>(k & ~3) << 2;
  for (let o: usize = 0; o < kEnd; o += 16) {
    const a0 = v128.load(x0 + o);
    const a1 = v128.load(x1 + o);
    const b0 = v128.load(w0 + o);
    const b1 = v128.load(w1 + o);
    const b2 = v128.load(w2 + o);
    const b3 = v128.load(w3 + o);
    c00 = madd(a0, b0, c00);
    c01 = madd(a0, b1, c01);
    c02 = madd(a0, b2, c02);
    c03 = madd(a0, b3, c03);
    c10 = madd(a1, b0, c10);
    c11 = madd(a1, b1, c11);
    c12 = madd(a1, b2, c12);
    c13 = madd(a1, b3, c13);
  }
  let r0 = hsum4(c00, c01, c02, c03);
  let r1 = hsum4(c10, c11, c12, c13);
  for (let j = k & ~3; j < k; j++) {
    // k not a multiple of 4: finish the odd columns with scalars broadcast per w row.
    const o = <usize>j << 2;
    const b = f32x4(load<f32>(w0 + o), load<f32>(w1 + o), load<f32>(w2 + o), load<f32>(w3 + o));
    r0 = madd(f32x4.splat(load<f32>(x0 + o)), b, r0);
    r1 = madd(f32x4.splat(load<f32>(x1 + o)), b, r1);
  }
  if (bias != 0) {
    const bv = v128.load(bias + (<usize>n << 2));
    r0 = f32x4.add(r0, bv);
    r1 = f32x4.add(r1, bv);
  }
  v128.store(o0, r0);
  v128.store(o0 + outRow, r1);
}

/**
 * The 1x4 micro-kernel: one x row by w rows w0 + j * wRow (j < 4) over k floats, summed in exactly
 * the order tile2x4 sums each of its rows (one f32x4 accumulator per w row, the same transpose-sum,
 * tail and bias), so a row's outputs do not depend on whether it ran alone or in a pair: the
 * matrix-vector product and an odd last row give the bits a GEMM row gives.
 */
// @ts-ignore: decorator
@inline function tile1x4(o0: usize, x0: usize, w0: usize, wRow: usize, k: i32, bias: usize, n: i32): void {
  const w1 = w0 + wRow;
  const w2 = w1 + wRow;
  const w3 = w2 + wRow;
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c02 = f32x4.splat(0), c03 = f32x4.splat(0);
  const kEnd = <usize>(k & ~3) << 2;
  for (let o: usize = 0; o < kEnd; o += 16) {
    const a0 = v128.load(x0 + o);
    c00 = madd(a0, v128.load(w0 + o), c00);
    c01 = madd(a0, v128.load(w1 + o), c01);
    c02 = madd(a0, v128.load(w2 + o), c02);
    c03 = madd(a0, v128.load(w3 + o), c03);
  }
  let r0 = hsum4(c00, c01, c02, c03);
  for (let j = k & ~3; j < k; j++) {
    const o = <usize>j << 2;
    const b = f32x4(load<f32>(w0 + o), load<f32>(w1 + o), load<f32>(w2 + o), load<f32>(w3 + o));
    r0 = madd(f32x4.splat(load<f32>(x0 + o)), b, r0);
  }
  if (bias != 0) r0 = f32x4.add(r0, v128.load(bias + (<usize>n << 2)));
  v128.store(o0, r0);
}

// @ts-ignore: decorator
@inline function single(out: usize, x: usize, w: usize, bias: usize, K: i32, N: i32, m: i32, n: i32): void {
  const rowBytes = <usize>K << 2;
  let s = dot(x + <usize>m * rowBytes, w + <usize>n * rowBytes, K);
  if (bias != 0) s += load<f32>(bias + (<usize>n << 2));
  store<f32>(out + ((<usize>m * <usize>N + <usize>n) << 2), s);
}

/** Blocked GEMM over weight rows [start, end). Threads split N; each reuses its w tile across x rows. */
export function gemmF32(out: usize, x: usize, w: usize, bias: usize, M: i32, K: i32, N: i32, start: i32, end: i32): void {
  const rowBytes = <usize>K << 2;
  const nEnd4 = start + ((end - start) & ~3);
  for (let mb = 0; mb < M; mb += M_BLOCK) {
    const mbEnd = min(M, mb + M_BLOCK);
    const mEnd2 = mb + ((mbEnd - mb) & ~1);
    for (let n = start; n < nEnd4; n += 4) {
      for (let m = mb; m < mEnd2; m += 2) {
        tile2x4(out + (<usize>m * <usize>N + <usize>n) * 4, <usize>N << 2, x + <usize>m * rowBytes, rowBytes, w + <usize>n * rowBytes, rowBytes, K, bias, n);
      }
      if (mEnd2 < mbEnd) tile1x4(out + (<usize>mEnd2 * <usize>N + <usize>n) * 4, x + <usize>mEnd2 * rowBytes, w + <usize>n * rowBytes, rowBytes, K, bias, n);
    }
    for (let n = nEnd4; n < end; n++) {
      for (let m = mb; m < mbEnd; m++) single(out, x, w, bias, K, N, m, n);
    }
  }
}

/**
 * Matrix-vector product over weight rows [start, end): streams each w row once. Four w rows at a
 * time through tile1x4, so each output is the bits gemmF32 gives that row in any batch (a decode
 * step batched with other sequences equals the same step run alone).
 */
export function gemvF32(out: usize, x: usize, w: usize, bias: usize, K: i32, start: i32, end: i32): void {
  const rowBytes = <usize>K << 2;
  let n = start;
  for (; n + 4 <= end; n += 4) tile1x4(out + (<usize>n << 2), x, w + <usize>n * rowBytes, rowBytes, K, bias, n);
  for (; n < end; n++) single(out, x, w, bias, K, 0, 0, n);
}

/** Partial SIMD sum of floats [start, end) at ptr: the bandwidth yardstick for gemvF32. */
export function sumF32(ptr: usize, start: i32, end: i32): f64 {
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  let k = start;
  for (; k < end && (k & 3) != 0; k++) s0 = f32x4.replace_lane(s0, 0, f32x4.extract_lane(s0, 0) + load<f32>(ptr + (<usize>k << 2)));
  for (; k + 16 <= end; k += 16) {
    const p = ptr + (<usize>k << 2);
    s0 = f32x4.add(s0, v128.load(p));
    s1 = f32x4.add(s1, v128.load(p, 16));
    s2 = f32x4.add(s2, v128.load(p, 32));
    s3 = f32x4.add(s3, v128.load(p, 48));
  }
  let s = <f64>hsum(f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3)));
  for (; k < end; k++) s += <f64>load<f32>(ptr + (<usize>k << 2));
  return s;
}

// Int8 weights with one f32 scale per 32 values along K (GGUF Q8_0's blocks), packed in groups of
// 8 rows for the products (layout at gemmQ8).
// Activations are quantized the same way but stored as i16 so the dot needs no widening of x.
import { madd } from './common';
import { Q8_MANY_BIAS, Q8_MANY_FIELDS, Q8_MANY_FIRST, Q8_MANY_N, Q8_MANY_OUT, Q8_MANY_QS, Q8_MANY_SCALES } from '../src/runtime/q8-many';

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

/**
 * Quantize rows [start, end) of src [rows, K] as weight rows row0 + i, written in the packed
 * layout (see gemmQ8) at qs and scales.
 */
export function quantizeQ8Rows(qs: usize, scales: usize, src: usize, K: i32, row0: i32, start: i32, end: i32): void {
  const nb = K >> 5;
  const groupBytes = <usize>K << 3;
  const groupScales = <usize>nb << 5;
  for (let i = start; i < end; i++) {
    const n = row0 + i;
    const gq = qs + <usize>(n >> 3) * groupBytes + (<usize>(n & 7) << 1);
    const gs = scales + <usize>(n >> 3) * groupScales + (<usize>(n & 7) << 2);
    for (let b = 0; b < nb; b++) {
      const p = src + ((<usize>i * <usize>nb + <usize>b) << 7);
      const amax = absMax8(p);
      const d: f32 = amax / 127;
      const inv = f32x4.splat(d != 0 ? <f32>1 / d : 0);
      let lo = i8x16.narrow_i16x8_s(round8(p, inv), round8(p + 32, inv));
      let hi = i8x16.narrow_i16x8_s(round8(p + 64, inv), round8(p + 96, inv));
      // Pair j of the block (values 2j, 2j+1) goes to the row's two bytes of pair slot b*16 + j,
      // slots 16 bytes apart. extract_lane needs a constant lane: the vector turns by one pair per step.
      const q = gq + (<usize>b << 8);
      for (let j = 0; j < 8; j++) {
        store<u16>(q + (<usize>j << 4), <u16>i16x8.extract_lane_u(lo, 0));
        lo = v128.shuffle<u8>(lo, lo, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1);
      }
      for (let j = 8; j < 16; j++) {
        store<u16>(q + (<usize>j << 4), <u16>i16x8.extract_lane_u(hi, 0));
        hi = v128.shuffle<u8>(hi, hi, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1);
      }
      store<f32>(gs + (<usize>b << 5), d);
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

// Products with packed int8 weights. Layout: group g holds weight rows 8g..8g+7 (rows past N are
// zero). Its values are K/2 pairs of 16 bytes, pair p = [r0 k, r0 k', r1 k, r1 k', ..., r7 k, r7 k']
// with k = 2p, k' = 2p+1: a load8x8_s of its first or second half gives an i16x8 whose
// i32x4.dot_i16x8_s with a splat of the activation pair (x[k], x[k']) holds four rows' sums in
// four lanes, so no horizontal sums, and every product reads the weights as one sequential stream.
// Its scales: per block, 8 f32 (one per row). Bytes per group: 8K values, 32 per block of scales.
//
// Every output sums its blocks in one order, f = madd(f32(isum_b), sw_b * sx_b, f) for b = 0..nb-1
// (isum_b the block's exact integer dot), in every tile, so an x row's outputs are the same bits
// whatever rows share the call: decode steps of several sequences batched into one product equal
// each one's step alone, and a prompt row's product does not depend on its chunk.

/** Stores 4 outputs (lanes < 4: the group's last rows are padding), adding bias when bias != 0. */
// @ts-ignore: decorator
@inline function store4(o: usize, f: v128, bias: usize, lanes: i32): void {
  if (lanes >= 4) {
    v128.store(o, bias != 0 ? f32x4.add(f, v128.load(bias)) : f);
    return;
  }
  for (let j = 0; j < lanes; j++) {
    // Lane j of f, turned into lane 0 (extract_lane takes a constant).
    let v = f32x4.extract_lane(f, 0);
    if (bias != 0) v += load<f32>(bias + (<usize>j << 2));
    store<f32>(o + (<usize>j << 2), v);
    f = v128.shuffle<f32>(f, f, 1, 2, 3, 0);
  }
}

/** Stores one group's 8 outputs of an x row, `lanes` of them (fewer in a last, padded group). */
// @ts-ignore: decorator
@inline function store8(o: usize, f0: v128, f1: v128, bias: usize, lanes: i32): void {
  if (lanes >= 8) {
    store4(o, f0, bias, 4);
    store4(o + 16, f1, bias != 0 ? bias + 16 : 0, 4);
  } else {
    store4(o, f0, bias, lanes);
    if (lanes > 4) store4(o + 16, f1, bias != 0 ? bias + 16 : 0, lanes - 4);
  }
}

/**
 * Tile 4x8: four x rows by one group (4 x 8 outputs). Per pair of K: 2 weight loads, 4 activation
 * splats, 8 dots and 8 adds into 8 i32x4 block sums; per block, 8 scaled multiply-adds into the
 * f32 sums (which V8 keeps partly on the stack: they are touched once per block).
 */
// @ts-ignore: decorator
@inline function tile4x8(o: usize, outRow: usize, x: usize, xRow: usize, xs: usize, xsRow: usize, w: usize, ws: usize, nb: i32, bias: usize, lanes: i32): void {
  let f00 = f32x4.splat(0), f01 = f32x4.splat(0), f10 = f32x4.splat(0), f11 = f32x4.splat(0);
  let f20 = f32x4.splat(0), f21 = f32x4.splat(0), f30 = f32x4.splat(0), f31 = f32x4.splat(0);
  let wp = w, xp = x, sp = ws, tp = xs;
  for (let b = 0; b < nb; b++) {
    let a00 = i32x4.splat(0), a01 = i32x4.splat(0), a10 = i32x4.splat(0), a11 = i32x4.splat(0);
    let a20 = i32x4.splat(0), a21 = i32x4.splat(0), a30 = i32x4.splat(0), a31 = i32x4.splat(0);
    for (let j: usize = 0; j < 256; j += 16) {
      const w0 = v128.load8x8_s(wp + j), w1 = v128.load8x8_s(wp + j, 8);
      const xo = xp + (j >> 2);
      let xv = v128.load32_splat(xo);
      a00 = i32x4.add(a00, i32x4.dot_i16x8_s(w0, xv)); a01 = i32x4.add(a01, i32x4.dot_i16x8_s(w1, xv));
      xv = v128.load32_splat(xo + xRow);
      a10 = i32x4.add(a10, i32x4.dot_i16x8_s(w0, xv)); a11 = i32x4.add(a11, i32x4.dot_i16x8_s(w1, xv));
      xv = v128.load32_splat(xo + 2 * xRow);
      a20 = i32x4.add(a20, i32x4.dot_i16x8_s(w0, xv)); a21 = i32x4.add(a21, i32x4.dot_i16x8_s(w1, xv));
      xv = v128.load32_splat(xo + 3 * xRow);
      a30 = i32x4.add(a30, i32x4.dot_i16x8_s(w0, xv)); a31 = i32x4.add(a31, i32x4.dot_i16x8_s(w1, xv));
    }
    const s0 = v128.load(sp), s1 = v128.load(sp, 16);
    let t = f32x4.splat(load<f32>(tp));
    f00 = madd(f32x4.convert_i32x4_s(a00), f32x4.mul(s0, t), f00); f01 = madd(f32x4.convert_i32x4_s(a01), f32x4.mul(s1, t), f01);
    t = f32x4.splat(load<f32>(tp + xsRow));
    f10 = madd(f32x4.convert_i32x4_s(a10), f32x4.mul(s0, t), f10); f11 = madd(f32x4.convert_i32x4_s(a11), f32x4.mul(s1, t), f11);
    t = f32x4.splat(load<f32>(tp + 2 * xsRow));
    f20 = madd(f32x4.convert_i32x4_s(a20), f32x4.mul(s0, t), f20); f21 = madd(f32x4.convert_i32x4_s(a21), f32x4.mul(s1, t), f21);
    t = f32x4.splat(load<f32>(tp + 3 * xsRow));
    f30 = madd(f32x4.convert_i32x4_s(a30), f32x4.mul(s0, t), f30); f31 = madd(f32x4.convert_i32x4_s(a31), f32x4.mul(s1, t), f31);
    wp += 256; xp += 64; sp += 32; tp += 4;
  }
  store8(o, f00, f01, bias, lanes);
  store8(o + outRow, f10, f11, bias, lanes);
  store8(o + 2 * outRow, f20, f21, bias, lanes);
  store8(o + 3 * outRow, f30, f31, bias, lanes);
}

/** Tile 1x8: one x row by one group (8 outputs); the matrix-vector product and tile 4x8's last rows. */
// @ts-ignore: decorator
@inline function tile1x8(o: usize, x: usize, xs: usize, w: usize, ws: usize, nb: i32, bias: usize, lanes: i32): void {
  let f0 = f32x4.splat(0), f1 = f32x4.splat(0);
  let wp = w, xp = x, sp = ws, tp = xs;
  for (let b = 0; b < nb; b++) {
    let a0 = i32x4.splat(0), a1 = i32x4.splat(0);
    for (let j: usize = 0; j < 256; j += 32) {
      const xv = v128.load32_splat(xp + (j >> 2));
      a0 = i32x4.add(a0, i32x4.dot_i16x8_s(v128.load8x8_s(wp + j), xv));
      a1 = i32x4.add(a1, i32x4.dot_i16x8_s(v128.load8x8_s(wp + j, 8), xv));
      const xv2 = v128.load32_splat(xp + (j >> 2), 4);
      a0 = i32x4.add(a0, i32x4.dot_i16x8_s(v128.load8x8_s(wp + j, 16), xv2));
      a1 = i32x4.add(a1, i32x4.dot_i16x8_s(v128.load8x8_s(wp + j, 24), xv2));
    }
    const t = f32x4.splat(load<f32>(tp));
    f0 = madd(f32x4.convert_i32x4_s(a0), f32x4.mul(v128.load(sp), t), f0);
    f1 = madd(f32x4.convert_i32x4_s(a1), f32x4.mul(v128.load(sp, 16), t), f1);
    wp += 256; xp += 64; sp += 32; tp += 4;
  }
  store8(o, f0, f1, bias, lanes);
}

/** x rows per block of gemmQ8: each weight group is read once per block (from L1/L2 within it). */
const M_BLOCK_Q: i32 = 64;

/**
 * out[M,N] = x · w^T (+ bias) with packed int8 weights (wq, ws) over groups [g0, g1) (weight rows
 * 8 g0 .. 8 g1), x quantized by quantizeActQ8 (xq, xs). M = 1 is the matrix-vector product.
 * Loops: x rows in blocks of M_BLOCK_Q; per block, each group is run by every 4-row tile of the
 * block, then by the block's last rows one by one.
 */
export function gemmQ8(out: usize, xq: usize, xs: usize, wq: usize, ws: usize, bias: usize, M: i32, K: i32, N: i32, g0: i32, g1: i32): void {
  const nb = K >> 5;
  const wRow = <usize>K << 3;
  const sRow = <usize>nb << 5;
  const xRow = <usize>K << 1;
  const xsRow = <usize>nb << 2;
  const outRow = <usize>N << 2;
  for (let mb = 0; mb < M; mb += M_BLOCK_Q) {
    const mbEnd = min(M, mb + M_BLOCK_Q);
    for (let g = g0; g < g1; g++) {
      const lanes = min(8, N - 8 * g);
      const w = wq + <usize>g * wRow, s = ws + <usize>g * sRow;
      const bg = bias != 0 ? bias + (<usize>g << 5) : 0;
      const og = out + (<usize>g << 5);
      let m = mb;
      for (; m + 4 <= mbEnd; m += 4) tile4x8(og + <usize>m * outRow, outRow, xq + <usize>m * xRow, xRow, xs + <usize>m * xsRow, xsRow, w, s, nb, bg, lanes);
      for (; m < mbEnd; m++) tile1x8(og + <usize>m * outRow, xq + <usize>m * xRow, xs + <usize>m * xsRow, w, s, nb, bg, lanes);
    }
  }
}

/** Field f of a gemmQ8Many record. */
// @ts-ignore: decorator
@inline function manyField(rec: usize, f: i32): i32 {
  return load<i32>(rec + (<usize>f << 2));
}

/**
 * gemmQ8 over several int8 matrices of the same K that share one quantized x (the q, k and v
 * projections; gate and up), as one range of items: their groups concatenated, [g0, g1) of them.
 * One record per matrix at `table` (src/runtime/q8-many.ts). Every output is computed as by
 * gemmQ8 on its matrix alone.
 */
export function gemmQ8Many(table: usize, count: i32, xq: usize, xs: usize, M: i32, K: i32, g0: i32, g1: i32): void {
  for (let i = 0; i < count; i++) {
    const rec = table + (<usize>(i * Q8_MANY_FIELDS) << 2);
    const N = manyField(rec, Q8_MANY_N);
    const first = manyField(rec, Q8_MANY_FIRST);
    const lo = max(g0, first), hi = min(g1, first + ((N + 7) >> 3));
    if (lo >= hi) continue;
    gemmQ8(<usize>manyField(rec, Q8_MANY_OUT), xq, xs, <usize>manyField(rec, Q8_MANY_QS), <usize>manyField(rec, Q8_MANY_SCALES), <usize>manyField(rec, Q8_MANY_BIAS), M, K, N, lo - first, hi - first);
  }
}

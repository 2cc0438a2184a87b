// Instruction-throughput yardsticks for `bench kernels`: register-only loops, no memory traffic.
// PEAK_CHAINS independent accumulators per loop, each operation reading its own accumulator, so
// the compiler can neither share one product between chains nor hoist it out of the loop (with a
// constant operand pair it would, and the loop would time the adds alone), and latency does not
// bound them, only issue rate.
import { madd } from './common';

/** Independent accumulator chains per peak loop: enough to cover a 4-8 cycle latency at two issues per cycle. */
const PEAK_CHAINS = 12;

/** n iterations of 12 f32x4 multiply-adds c = c * b + a (madd: fused in the relaxed build): peakMaddMacs() * n. */
export function peakMadd(n: i32, seed: f32): f32 {
  const a = f32x4.splat(seed), b = f32x4.splat(0.999);
  let c0 = f32x4.splat(0), c1 = f32x4.splat(1), c2 = f32x4.splat(2), c3 = f32x4.splat(3);
  let c4 = f32x4.splat(4), c5 = f32x4.splat(5), c6 = f32x4.splat(6), c7 = f32x4.splat(7);
  let c8 = f32x4.splat(8), c9 = f32x4.splat(9), c10 = f32x4.splat(10), c11 = f32x4.splat(11);
  for (let i = 0; i < n; i++) {
    c0 = madd(c0, b, a); c1 = madd(c1, b, a); c2 = madd(c2, b, a); c3 = madd(c3, b, a);
    c4 = madd(c4, b, a); c5 = madd(c5, b, a); c6 = madd(c6, b, a); c7 = madd(c7, b, a);
    c8 = madd(c8, b, a); c9 = madd(c9, b, a); c10 = madd(c10, b, a); c11 = madd(c11, b, a);
  }
  const s = f32x4.add(
    f32x4.add(f32x4.add(f32x4.add(c0, c1), f32x4.add(c2, c3)), f32x4.add(f32x4.add(c4, c5), f32x4.add(c6, c7))),
    f32x4.add(f32x4.add(c8, c9), f32x4.add(c10, c11)),
  );
  return f32x4.extract_lane(s, 0);
}

/** Multiply-adds of one iteration of peakMadd. */
export function peakMaddMacs(): i32 {
  return PEAK_CHAINS * 4;
}

/**
 * n iterations of 12 of gemmQ8's integer dot-accumulates, c = c + i32x4.dot_i16x8_s(c, b) (8 int16
 * multiply-adds each, the accumulator's bits read as i16x8): peakDotMacs() * n. Both builds.
 */
export function peakDot(n: i32, seed: i32): i32 {
  const b = i16x8.splat(<i16>seed);
  let c0 = i32x4.splat(0), c1 = i32x4.splat(1), c2 = i32x4.splat(2), c3 = i32x4.splat(3);
  let c4 = i32x4.splat(4), c5 = i32x4.splat(5), c6 = i32x4.splat(6), c7 = i32x4.splat(7);
  let c8 = i32x4.splat(8), c9 = i32x4.splat(9), c10 = i32x4.splat(10), c11 = i32x4.splat(11);
  for (let i = 0; i < n; i++) {
    c0 = i32x4.add(c0, i32x4.dot_i16x8_s(c0, b)); c1 = i32x4.add(c1, i32x4.dot_i16x8_s(c1, b));
    c2 = i32x4.add(c2, i32x4.dot_i16x8_s(c2, b)); c3 = i32x4.add(c3, i32x4.dot_i16x8_s(c3, b));
    c4 = i32x4.add(c4, i32x4.dot_i16x8_s(c4, b)); c5 = i32x4.add(c5, i32x4.dot_i16x8_s(c5, b));
    c6 = i32x4.add(c6, i32x4.dot_i16x8_s(c6, b)); c7 = i32x4.add(c7, i32x4.dot_i16x8_s(c7, b));
    c8 = i32x4.add(c8, i32x4.dot_i16x8_s(c8, b)); c9 = i32x4.add(c9, i32x4.dot_i16x8_s(c9, b));
    c10 = i32x4.add(c10, i32x4.dot_i16x8_s(c10, b)); c11 = i32x4.add(c11, i32x4.dot_i16x8_s(c11, b));
  }
  const s = i32x4.add(
    i32x4.add(i32x4.add(i32x4.add(c0, c1), i32x4.add(c2, c3)), i32x4.add(i32x4.add(c4, c5), i32x4.add(c6, c7))),
    i32x4.add(i32x4.add(c8, c9), i32x4.add(c10, c11)),
  );
  return i32x4.extract_lane(s, 0);
}

/** Multiply-adds of one iteration of peakDot. */
export function peakDotMacs(): i32 {
  return PEAK_CHAINS * 8;
}

/**
 * The relaxed build's widest int8 dot, c = i32x4.relaxed_dot_i8x16_i7x16_add_s(c, b, c) (16 int8
 * multiply-adds each), for comparison: gemmQ8 does not use it (one operand must fit in 7 bits).
 * The plain build has no such instruction and returns 0 at once.
 */
export function peakDotRelaxed(n: i32, seed: i32): i32 {
  if (!ASC_FEATURE_RELAXED_SIMD) return 0;
  const b = i8x16.splat(<i8>(seed & 63));
  let c0 = i32x4.splat(0), c1 = i32x4.splat(1), c2 = i32x4.splat(2), c3 = i32x4.splat(3);
  let c4 = i32x4.splat(4), c5 = i32x4.splat(5), c6 = i32x4.splat(6), c7 = i32x4.splat(7);
  let c8 = i32x4.splat(8), c9 = i32x4.splat(9), c10 = i32x4.splat(10), c11 = i32x4.splat(11);
  for (let i = 0; i < n; i++) {
    c0 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c0, b, c0); c1 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c1, b, c1);
    c2 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c2, b, c2); c3 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c3, b, c3);
    c4 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c4, b, c4); c5 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c5, b, c5);
    c6 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c6, b, c6); c7 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c7, b, c7);
    c8 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c8, b, c8); c9 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c9, b, c9);
    c10 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c10, b, c10); c11 = i32x4.relaxed_dot_i8x16_i7x16_add_s(c11, b, c11);
  }
  const s = i32x4.add(
    i32x4.add(i32x4.add(i32x4.add(c0, c1), i32x4.add(c2, c3)), i32x4.add(i32x4.add(c4, c5), i32x4.add(c6, c7))),
    i32x4.add(i32x4.add(c8, c9), i32x4.add(c10, c11)),
  );
  return i32x4.extract_lane(s, 0);
}

/** Multiply-adds of one iteration of peakDotRelaxed (0 in the plain build). */
export function peakDotRelaxedMacs(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? PEAK_CHAINS * 16 : 0;
}

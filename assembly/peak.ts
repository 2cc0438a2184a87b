// Instruction-throughput yardsticks for `bench kernels`: register-only loops, no memory traffic.
// Eight independent accumulators per loop so latency does not bound them, only issue rate.
import { madd } from './common';

/** n iterations of 8 f32x4 multiply-adds (madd: fused in the relaxed build): 32 n multiply-adds. */
export function peakMadd(n: i32, seed: f32): f32 {
  const a = f32x4.splat(seed), b = f32x4.splat(0.999);
  let c0 = f32x4.splat(0), c1 = f32x4.splat(1), c2 = f32x4.splat(2), c3 = f32x4.splat(3);
  let c4 = f32x4.splat(4), c5 = f32x4.splat(5), c6 = f32x4.splat(6), c7 = f32x4.splat(7);
  for (let i = 0; i < n; i++) {
    c0 = madd(a, b, c0); c1 = madd(a, b, c1); c2 = madd(a, b, c2); c3 = madd(a, b, c3);
    c4 = madd(a, b, c4); c5 = madd(a, b, c5); c6 = madd(a, b, c6); c7 = madd(a, b, c7);
  }
  const s = f32x4.add(f32x4.add(f32x4.add(c0, c1), f32x4.add(c2, c3)), f32x4.add(f32x4.add(c4, c5), f32x4.add(c6, c7)));
  return f32x4.extract_lane(s, 0);
}

/**
 * n iterations of 8 integer dot-accumulates, the widest this build has: relaxed,
 * i32x4.relaxed_dot_i8x16_i7x16_add_s (16 int8 multiply-adds each); plain, i32x4.dot_i16x8_s then
 * an add (8 int16 multiply-adds each). Multiply-adds per call: peakDotMacs() * n.
 */
export function peakDot(n: i32, seed: i32): i32 {
  const a = i8x16.splat(<i8>seed), b = i8x16.splat(3);
  let c0 = i32x4.splat(0), c1 = i32x4.splat(1), c2 = i32x4.splat(2), c3 = i32x4.splat(3);
  let c4 = i32x4.splat(4), c5 = i32x4.splat(5), c6 = i32x4.splat(6), c7 = i32x4.splat(7);
  for (let i = 0; i < n; i++) {
    if (ASC_FEATURE_RELAXED_SIMD) {
      c0 = i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c0); c1 = i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c1);
      c2 = i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c2); c3 = i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c3);
      c4 = i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c4); c5 = i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c5);
      c6 = i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c6); c7 = i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c7);
    } else {
      c0 = i32x4.add(c0, i32x4.dot_i16x8_s(a, b)); c1 = i32x4.add(c1, i32x4.dot_i16x8_s(a, b));
      c2 = i32x4.add(c2, i32x4.dot_i16x8_s(a, b)); c3 = i32x4.add(c3, i32x4.dot_i16x8_s(a, b));
      c4 = i32x4.add(c4, i32x4.dot_i16x8_s(a, b)); c5 = i32x4.add(c5, i32x4.dot_i16x8_s(a, b));
      c6 = i32x4.add(c6, i32x4.dot_i16x8_s(a, b)); c7 = i32x4.add(c7, i32x4.dot_i16x8_s(a, b));
    }
  }
  const s = i32x4.add(i32x4.add(i32x4.add(c0, c1), i32x4.add(c2, c3)), i32x4.add(i32x4.add(c4, c5), i32x4.add(c6, c7)));
  return i32x4.extract_lane(s, 0);
}

/** Multiply-adds of one iteration of peakDot in this build. */
export function peakDotMacs(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? 8 * 16 : 8 * 8;
}

// Elementwise kernels over index range [start, end).
import { madd } from './common';

/** e^t on four lanes: t = n ln2 + r with |r| <= ln2/2, degree-6 polynomial for e^r, 2^n via the exponent bits. */
// @ts-ignore: decorator
@inline function exp4(t: v128): v128 {
  // Clamp keeps 2^n a normal float (n in [-126, 127]); beyond, silu is already 0 or the identity.
  const tc = f32x4.min(f32x4.max(t, f32x4.splat(-87.0)), f32x4.splat(88.0));
  const n = f32x4.nearest(f32x4.mul(tc, f32x4.splat(1.44269504)));
  // ln2 split in two so n*ln2 subtracts without losing r's low bits.
  const r = f32x4.sub(f32x4.sub(tc, f32x4.mul(n, f32x4.splat(0.693145752))), f32x4.mul(n, f32x4.splat(1.42860677e-6)));
  let p = f32x4.splat(1.0 / 720.0);
  p = madd(p, r, f32x4.splat(1.0 / 120.0));
  p = madd(p, r, f32x4.splat(1.0 / 24.0));
  p = madd(p, r, f32x4.splat(1.0 / 6.0));
  p = madd(p, r, f32x4.splat(0.5));
  p = madd(p, r, f32x4.splat(1.0));
  p = madd(p, r, f32x4.splat(1.0));
  const pow2n = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23);
  return f32x4.mul(p, pow2n);
}

export function siluMul(out: usize, gate: usize, up: usize, start: i32, end: i32): void {
  let i = start;
  const one = f32x4.splat(1);
  for (; i + 4 <= end; i += 4) {
    const o = <usize>i << 2;
    const g = v128.load(gate + o);
    const e = exp4(f32x4.neg(g));
    v128.store(out + o, f32x4.mul(f32x4.div(g, f32x4.add(one, e)), v128.load(up + o)));
  }
  for (; i < end; i++) {
    const o = <usize>i << 2;
    const g = load<f32>(gate + o);
    store<f32>(out + o, g / (<f32>1 + Mathf.exp(-g)) * load<f32>(up + o));
  }
}

export function add(out: usize, a: usize, b: usize, start: i32, end: i32): void {
  let i = start;
  for (; i < end && (i & 3) != 0; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
  for (; i + 4 <= end; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (; i < end; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

// RMSNorm per row: out = x / sqrt(mean(x^2) + eps) * weight.
import { hsum, madd } from './common';

export function rmsnorm(out: usize, x: usize, weight: usize, D: i32, eps: f32, start: i32, end: i32): void {
  const rowBytes = <usize>D << 2;
  const d4 = D & ~3;
  for (let r = start; r < end; r++) {
    const xr = x + <usize>r * rowBytes;
    const orow = out + <usize>r * rowBytes;
    let s0 = f32x4.splat(0), s1 = f32x4.splat(0);
    let k = 0;
    for (; k + 8 <= D; k += 8) {
      const a = v128.load(xr + (<usize>k << 2));
      const b = v128.load(xr + (<usize>k << 2), 16);
      s0 = madd(a, a, s0);
      s1 = madd(b, b, s1);
    }
    let ss = hsum(f32x4.add(s0, s1));
    for (; k < D; k++) {
      const a = load<f32>(xr + (<usize>k << 2));
      ss += a * a;
    }
    const inv: f32 = <f32>1 / Mathf.sqrt(ss / <f32>D + eps);
    const iv = f32x4.splat(inv);
    k = 0;
    for (; k < d4; k += 4) {
      const o = <usize>k << 2;
      v128.store(orow + o, f32x4.mul(f32x4.mul(v128.load(xr + o), iv), v128.load(weight + o)));
    }
    for (; k < D; k++) {
      const o = <usize>k << 2;
      store<f32>(orow + o, load<f32>(xr + o) * inv * load<f32>(weight + o));
    }
  }
}

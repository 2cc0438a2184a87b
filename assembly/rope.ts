// Rotary position embedding, Hugging Face rotate-half convention, in place on rows [start, end).
import { madd } from './common';

export function rope(x: usize, nHeads: i32, headDim: i32, pos: usize, invFreq: usize, start: i32, end: i32): void {
  const half = headDim >> 1;
  const rowBytes = (<usize>nHeads * <usize>headDim) << 2;
  const headBytes = <usize>headDim << 2;
  const halfBytes = <usize>half << 2;
  for (let r = start; r < end; r++) {
    const p = <f32>load<i32>(pos + (<usize>r << 2));
    const xr = x + <usize>r * rowBytes;
    let i = 0;
    for (; i + 4 <= half; i += 4) {
      const fo = <usize>i << 2;
      // Angle rounded to f32 as the reference computes it, then cos/sin in f64 and rounded.
      const t0 = <f64>(p * load<f32>(invFreq + fo));
      const t1 = <f64>(p * load<f32>(invFreq + fo, 4));
      const t2 = <f64>(p * load<f32>(invFreq + fo, 8));
      const t3 = <f64>(p * load<f32>(invFreq + fo, 12));
      const c = f32x4(<f32>Math.cos(t0), <f32>Math.cos(t1), <f32>Math.cos(t2), <f32>Math.cos(t3));
      const s = f32x4(<f32>Math.sin(t0), <f32>Math.sin(t1), <f32>Math.sin(t2), <f32>Math.sin(t3));
      for (let h = 0; h < nHeads; h++) {
        const a = xr + <usize>h * headBytes + fo;
        const b = a + halfBytes;
        const va = v128.load(a);
        const vb = v128.load(b);
        v128.store(a, f32x4.sub(f32x4.mul(va, c), f32x4.mul(vb, s)));
        v128.store(b, madd(va, s, f32x4.mul(vb, c)));
      }
    }
    for (; i < half; i++) {
      const t = <f64>(p * load<f32>(invFreq + (<usize>i << 2)));
      const c = <f32>Math.cos(t);
      const s = <f32>Math.sin(t);
      for (let h = 0; h < nHeads; h++) {
        const a = xr + <usize>h * headBytes + (<usize>i << 2);
        const b = a + halfBytes;
        const va = load<f32>(a);
        const vb = load<f32>(b);
        store<f32>(a, va * c - vb * s);
        store<f32>(b, vb * c + va * s);
      }
    }
  }
}

// Numerically stable softmax, in place, on rows [start, end).

/** Softmax of n floats at p in place. */
export function softmaxRow(p: usize, n: i32): void {
  let m: f32 = -Infinity;
  for (let i = 0; i < n; i++) m = max(m, load<f32>(p + (<usize>i << 2)));
  let s: f32 = 0;
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const e = Mathf.exp(load<f32>(p + o) - m);
    store<f32>(p + o, e);
    s += e;
  }
  const inv: f32 = <f32>1 / s;
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(p + o, load<f32>(p + o) * inv);
  }
}

export function softmax(x: usize, cols: i32, start: i32, end: i32): void {
  for (let r = start; r < end; r++) softmaxRow(x + ((<usize>r * <usize>cols) << 2), cols);
}

// Elementwise kernels over index range [start, end).

export function siluMul(out: usize, gate: usize, up: usize, start: i32, end: i32): void {
  for (let i = start; i < end; i++) {
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

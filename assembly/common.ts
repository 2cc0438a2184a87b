// Shared helpers for the kernels. Pointers are byte offsets into the one shared memory.

/** Per-instance (so per-thread) scratch region; each thread's instance gets its own pointer. */
export let threadScratch: usize = 0;
export let threadScratchBytes: usize = 0;

export function setThreadScratch(ptr: usize, bytes: usize): void {
  threadScratch = ptr;
  threadScratchBytes = bytes;
}

/** First free byte after the module's static data, so the JS allocator never overlaps it. */
export function heapBase(): usize {
  return __heap_base;
}

/**
 * a * b + c per lane. The relaxed build (compiled with relaxed-simd) emits f32x4.relaxed_madd, which
 * V8 lowers to one fused multiply-add where the CPU has FMA (one rounding); the plain build rounds
 * the product and the sum separately. Outputs of the two builds therefore differ by float rounding.
 */
// @ts-ignore: decorator
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/** Horizontal sums of four vectors, returned as one vector [sum a, sum b, sum c, sum d]. */
// @ts-ignore: decorator
@inline export function hsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(v128.shuffle<f32>(a, b, 0, 4, 1, 5), v128.shuffle<f32>(a, b, 2, 6, 3, 7));
  const cd = f32x4.add(v128.shuffle<f32>(c, d, 0, 4, 1, 5), v128.shuffle<f32>(c, d, 2, 6, 3, 7));
  return f32x4.add(v128.shuffle<f32>(ab, cd, 0, 1, 4, 5), v128.shuffle<f32>(ab, cd, 2, 3, 6, 7));
}

// @ts-ignore: decorator
@inline export function hsum(a: v128): f32 {
  const s = f32x4.add(a, v128.shuffle<f32>(a, a, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

/** Dot product of n floats at a and b (any alignment, any n). */
// @ts-ignore: decorator
@inline export function dot(a: usize, b: usize, n: i32): f32 {
  let s0 = f32x4.splat(0);
  let s1 = f32x4.splat(0);
  let k = 0;
  for (; k + 8 <= n; k += 8) {
    const o = <usize>k << 2;
    s0 = madd(v128.load(a + o), v128.load(b + o), s0);
    s1 = madd(v128.load(a + o, 16), v128.load(b + o, 16), s1);
  }
  if (k + 4 <= n) {
    const o = <usize>k << 2;
    s0 = madd(v128.load(a + o), v128.load(b + o), s0);
    k += 4;
  }
  let s = hsum(f32x4.add(s0, s1));
  for (; k < n; k++) {
    const o = <usize>k << 2;
    s += load<f32>(a + o) * load<f32>(b + o);
  }
  return s;
}

/** y[0..n) += alpha * x[0..n). */
export function axpy(y: usize, x: usize, alpha: f32, n: i32): void {
  const av = f32x4.splat(alpha);
  let k = 0;
  for (; k + 4 <= n; k += 4) {
    const o = <usize>k << 2;
    v128.store(y + o, madd(av, v128.load(x + o), v128.load(y + o)));
  }
  for (; k < n; k++) {
    const o = <usize>k << 2;
    store<f32>(y + o, load<f32>(y + o) + alpha * load<f32>(x + o));
  }
}

/** x[0..n) *= alpha. */
export function scale(x: usize, alpha: f32, n: i32): void {
  const av = f32x4.splat(alpha);
  let k = 0;
  for (; k + 4 <= n; k += 4) {
    const o = <usize>k << 2;
    v128.store(x + o, f32x4.mul(v128.load(x + o), av));
  }
  for (; k < n; k++) {
    const o = <usize>k << 2;
    store<f32>(x + o, load<f32>(x + o) * alpha);
  }
}

export function zero(x: usize, n: i32): void {
  memory.fill(x, 0, <usize>n << 2);
}

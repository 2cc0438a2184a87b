// Shared test helpers: a seeded generator and comparisons with stated tolerances.
import assert from 'node:assert/strict';
import type { Runtime } from '../../src/runtime/wasm.ts';

/** Deterministic uniform [-1, 1) generator (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

export function randArray(n: number, r: () => number, amp = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r() * amp;
  return a;
}

/** Copies data into freshly allocated runtime memory and returns the pointer. */
export function put(rt: Runtime, data: Float32Array | Int32Array): number {
  const p = rt.alloc(data.length * 4);
  if (data instanceof Float32Array) rt.f32(p, data.length).set(data);
  else rt.i32(p, data.length).set(data);
  return p;
}

/** |got - want| <= atol + rtol*|want| elementwise. */
export function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    if (!(err <= atol + rtol * Math.abs(want[i]))) {
      assert.fail(`${what}: index ${i} got ${got[i]} want ${want[i]} (err ${err})`);
    }
  }
}

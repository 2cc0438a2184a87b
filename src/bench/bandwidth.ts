import type { Runtime } from '../runtime/wasm.ts';

/** Read bandwidth (bytes/s) of a parallel SIMD sum over `bytes` of wasm memory; best of 5. */
export function measureBandwidth(rt: Runtime, bytes: number): number {
  const n = Math.floor(bytes / 4 / 16) * 16;
  const ptr = rt.alloc(n * 4, 64);
  rt.f32(ptr, n).fill(1);
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    rt.k.sumF32(ptr, n);
    best = Math.min(best, performance.now() - t);
  }
  rt.free(ptr);
  return (n * 4) / (best / 1000);
}

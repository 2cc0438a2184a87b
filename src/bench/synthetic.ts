/**
 * Caches filled with random values, for benchmarks of decode speed and memory (which do not depend
 * on the values): K/V rows for every layer and position, and random observation-window queries so
 * that eviction methods score and evict as after a real prefill. Outputs decoded from such a cache
 * are meaningless; reports label them synthetic.
 */
import type { Runtime } from '../runtime/wasm.ts';
import type { SequenceKV } from '../kv/store.ts';
import type { ForwardHooks } from '../model/llama.ts';
import { makeRng } from '../engine/sampling.ts';

/** Random K/V rows for `tokens` positions in every layer (256 distinct rows, repeated). */
export function fillRandomKV(rt: Runtime, seq: SequenceKV, rowFloats: number, tokens: number, seed = 3): void {
  const chunk = 256;
  const k = rt.alloc(chunk * rowFloats * 4);
  const v = rt.alloc(chunk * rowFloats * 4);
  try {
    const rng = makeRng(seed);
    const fill = (ptr: number) => {
      const a = rt.f32(ptr, chunk * rowFloats);
      for (let i = 0; i < a.length; i++) a[i] = rng() * 2 - 1;
    };
    fill(k);
    fill(v);
    const base = seq.nextPosition;
    for (let start = 0; start < tokens; start += chunk) {
      const T = Math.min(chunk, tokens - start);
      const pos = Int32Array.from({ length: T }, (_, i) => base + start + i);
      for (let l = 0; l < seq.layers; l++) seq.append(l, k, v, T, pos);
    }
    seq.nextPosition = base + tokens;
  } finally {
    rt.free(k);
    rt.free(v);
  }
}

/** Random query rows for every layer's observation window, as a prefill's last `rows` would give. */
export function feedRandomWindow(hooks: ForwardHooks, layers: number, rows: number, qDim: number, seed = 11): void {
  if (rows <= 0 || !hooks.onQueries) return;
  const rng = makeRng(seed);
  const q = new Float32Array(rows * qDim).map(() => rng() * 2 - 1);
  for (let l = 0; l < layers; l++) hooks.onQueries(l, q, rows);
}

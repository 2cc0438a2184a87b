/**
 * Haystack sizing. RULER binary-searches the number of haystack units (words, filler sentences,
 * needle lines, list words) whose prompt still fits `length - tokens_to_generate` tokens. A real
 * tokenizer over a 100K-token prompt is slow, so this search starts from a secant estimate (token
 * count is close to linear in the unit count) and only brackets and bisects near it: a handful of
 * full encodes instead of ~17. The answer is still checked by encoding the whole prompt, and the
 * search path depends only on the sample, so the result is deterministic.
 */
import { UsageError } from '../../errors.ts';

/**
 * Largest `n >= nMin` found with `tokensAt(n) <= budget`, where the next unit no longer fits.
 * `tokensAt` must be a pure function of n (same text each call). Throws when `nMin` does not fit.
 */
export function largestFitting(tokensAt: (n: number) => number, budget: number, nMin: number, what: string): number {
  const memo = new Map<number, number>();
  const f = (n: number): number => {
    let t = memo.get(n);
    if (t === undefined) { t = tokensAt(n); memo.set(n, t); }
    return t;
  };
  const t0 = f(nMin);
  if (t0 > budget) {
    throw new UsageError(`${what}: the length is too small; its smallest prompt takes ${t0} tokens but only ${budget} are left after the tokens to generate. Use a larger length.`);
  }
  let lo = nMin, tLo = t0;
  let hi = -1, tHi = Infinity;
  // Tokens per unit from a small probe, refined by every point evaluated.
  const probe = nMin + 16;
  const tProbe = f(probe);
  if (tProbe <= budget) { lo = probe; tLo = tProbe; } else { hi = probe; tHi = tProbe; }
  let slow = 0;
  while (hi === -1 || hi - lo > 1) {
    let g: number;
    if (hi === -1) {
      const rate = Math.max((tLo - t0) / (lo - nMin), 1e-6);
      // Land just past the boundary so the next step brackets it from both sides.
      g = lo + Math.max(1, Math.floor((budget - tLo) / rate) + 1);
    } else if (slow >= 2) {
      g = (lo + hi) >> 1;
    } else {
      g = lo + Math.floor(((budget - tLo) * (hi - lo)) / Math.max(tHi - tLo, 1e-9));
      g = Math.min(hi - 1, Math.max(lo + 1, g));
    }
    const width = hi === -1 ? Infinity : hi - lo;
    const t = f(g);
    if (t <= budget) { lo = g; tLo = t; } else { hi = g; tHi = t; }
    // Regula falsi can creep from one side; bisect when a step fails to halve the bracket.
    slow = hi !== -1 && width !== Infinity && hi - lo > width / 2 ? slow + 1 : 0;
    if (hi !== -1 && hi - lo > 1 && slow === 0 && width !== Infinity) {
      // Check the neighbour on the far side of the estimate: usually closes the bracket at once.
      const n2 = t <= budget ? g + 1 : g - 1;
      if (n2 > lo && n2 < hi) {
        const t2 = f(n2);
        if (t2 <= budget) { lo = n2; tLo = t2; } else { hi = n2; tHi = t2; }
      }
    }
  }
  return lo;
}

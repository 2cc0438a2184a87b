/**
 * Seeded random numbers for the task generators. Kept private to the generators (not the engine's
 * sampler) so that a change elsewhere can never silently change the benchmark's samples.
 */

/** FNV-1a over the UTF-16 code units of `s`: turns (task, seed, index, stream) into a 32-bit seed. */
export function hashSeed(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export class Rng {
  private state: number;

  constructor(seed: number) { this.state = seed >>> 0; }

  static forStream(...parts: (string | number)[]): Rng { return new Rng(hashSeed(parts.join('|'))); }

  /** splitmix32: 32 random bits. */
  nextU32(): number {
    this.state = (this.state + 0x9e3779b9) >>> 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad) >>> 0;
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97) >>> 0;
    return (z ^ (z >>> 15)) >>> 0;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  next(): number {
    const hi = this.nextU32() >>> 5;
    const lo = this.nextU32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [lo, hi], both inclusive. */
  int(lo: number, hi: number): number { return lo + Math.floor(this.next() * (hi - lo + 1)); }

  choice<T>(items: readonly T[]): T { return items[Math.floor(this.next() * items.length)]!; }

  /** Fisher-Yates, in place. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      const t = items[i]!; items[i] = items[j]!; items[j] = t;
    }
    return items;
  }

  /** `k` distinct items, in random order (partial Fisher-Yates on a copy). */
  sample<T>(items: readonly T[], k: number): T[] {
    if (k > items.length) throw new RangeError(`cannot sample ${k} of ${items.length} items`);
    const a = items.slice();
    for (let i = 0; i < k; i++) {
      const j = i + Math.floor(this.next() * (a.length - i));
      const t = a[i]!; a[i] = a[j]!; a[j] = t;
    }
    return a.slice(0, k);
  }

  /** Random version-4 UUID string (122 random bits, RFC 4122 variant), lowercase. */
  uuid(): string {
    const w = [this.nextU32(), this.nextU32(), this.nextU32(), this.nextU32()];
    w[1] = ((w[1]! & 0xffff0fff) | 0x00004000) >>> 0;   // version nibble = 4
    w[2] = ((w[2]! & 0x3fffffff) | 0x80000000) >>> 0;   // variant bits = 10
    const hex = w.map((x) => x.toString(16).padStart(8, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
  }
}

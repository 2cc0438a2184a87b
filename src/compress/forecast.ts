/**
 * How many KV blocks a request needs, forecast before any work from its prompt length, its max new
 * tokens and its method: at the end of prefill (the whole prompt, uncompressed, and GQA copies for
 * methods that expand), once compressed, and at its end. Admission compares the peak with the
 * pool's capacity (never), and the prefill peak with its free blocks (now or later).
 */
import type { CompressionParts } from './method.ts';

export interface ForecastShape {
  layers: number;
  kvHeads: number;
  /** Query heads per KV head. */
  group: number;
  blockSlots: number;
}

export interface BlockForecast {
  /** Blocks held when the prompt has run, before eviction (GQA copies included while they coexist). */
  prefillPeak: number;
  /** Blocks right after eviction (the prompt's blocks for methods that do not evict). */
  compressed: number;
  /** Blocks at the end, every new token appended (continual methods: their bound). */
  final: number;
  /** The most blocks the request holds at once. */
  peak: number;
}

export function forecastBlocks(parts: CompressionParts, budget: number, promptLength: number, maxNewTokens: number, shape: ForecastShape): BlockForecast {
  const { layers, kvHeads, group, blockSlots: bs } = shape;
  const heads = layers * kvHeads;
  const full = (tokens: number): number => heads * Math.ceil(tokens / bs);
  const total = promptLength + maxNewTokens;
  const ev = parts.eviction;
  if (!ev || parts.mode === 'view' || promptLength <= ev.minLengthToEvict) {
    const prefillPeak = full(promptLength);
    return { prefillPeak, compressed: prefillPeak, final: full(total), peak: full(total) };
  }
  // Expansion copies every layer G times before the old heads go, one layer after another.
  const copies = ev.expandGqa ? group : 1;
  const stored = heads * copies;
  const perStored = (tokens: number): number => stored * Math.ceil(tokens / bs);
  const prefillPeak = ev.expandGqa ? perStored(promptLength) + kvHeads * Math.ceil(promptLength / bs) : full(promptLength);
  const kept = Math.min(promptLength, ev.keptPerHead?.(budget, bs) ?? promptLength);
  // Heads may keep unequal counts around the average: at most one partial block each.
  const compressed = Math.min(perStored(promptLength), Math.ceil((stored * kept) / bs) + stored);
  const final = ev.evictAfterStep
    ? Math.min(perStored(total), compressed + 2 * stored)
    : Math.min(perStored(total), Math.ceil((stored * (kept + maxNewTokens)) / bs) + stored);
  return { prefillPeak, compressed, final, peak: Math.max(prefillPeak, compressed, final) };
}

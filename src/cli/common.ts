import type { WeightFormat } from '../model/weights.ts';
import { UsageError } from '../errors.ts';

export function parseWeightFormat(v: string | undefined): WeightFormat | undefined {
  if (v === undefined) return undefined;
  if (v === 'f32' || v === 'q8') return v;
  throw new UsageError(`--weights must be f32 or q8, got '${v}'`);
}

/** A comma-separated option value: its items, none empty. */
export function listArg(name: string, v: string): string[] {
  const items = v.split(',').map((s) => s.trim());
  if (items.length === 0 || items.some((s) => s === '')) throw new UsageError(`--${name} must be a comma-separated list without empty items, got '${v}'`);
  return items;
}

/** A comma-separated list of positive integers. */
export function intListArg(name: string, v: string): number[] {
  return listArg(name, v).map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${name} takes positive integers, got '${s}'`);
    return n;
  });
}

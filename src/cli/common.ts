import type { WeightFormat } from '../model/weights.ts';
import { UsageError } from '../errors.ts';
import bytes from 'bytes';

/** A byte size: a number of bytes, or with a unit (KB, MB, GB, TB or KiB, MiB, GiB, TiB: powers of 1024). */
export function parseBytes(name: string, v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$/i.exec(v);
  const n = m ? bytes.parse(m[1]! + (m[2] ?? 'B').replace(/iB$/i, 'B')) : null;
  if (n === null || !(n > 0)) throw new UsageError(`--${name} must be a size in bytes such as 600MB or 2GiB (units are powers of 1024), got '${v}'`);
  return Math.floor(n);
}

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

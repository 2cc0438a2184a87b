import type { WeightFormat } from '../model/weights.ts';
import { UsageError } from '../errors.ts';

export function parseWeightFormat(v: string | undefined): WeightFormat | undefined {
  if (v === undefined) return undefined;
  if (v === 'f32' || v === 'q8') return v;
  throw new UsageError(`--weights must be f32 or q8, got '${v}'`);
}

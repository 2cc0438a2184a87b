/** RULER synthetic tasks: one generator per family, dispatched by task name. */
import { UsageError } from '../../errors.ts';
import { generateCwe } from './cwe.ts';
import { generateFwe } from './fwe.ts';
import { NIAH_CONFIGS, generateNiah, type NiahTask } from './niah.ts';
import type { GenerateSampleOptions, Sample, TaskName } from './types.ts';
import { generateVt } from './vt.ts';

export type { GenerateSampleOptions, Sample, TaskName, TextTokenizer, TurnQuery } from './types.ts';

export const TASKS: TaskName[] = [
  'niah_single_1', 'niah_single_2', 'niah_single_3', 'niah_multikey_1', 'niah_multikey_2',
  'niah_multikey_3', 'niah_multivalue', 'niah_multiquery', 'vt', 'cwe', 'fwe',
];

/** One sample of `task`, a pure function of (task, seed, index, length, tokenizer[, depth]). */
export function generateSample(task: TaskName, o: GenerateSampleOptions): Sample {
  if (!Number.isInteger(o.length) || o.length <= 0) throw new UsageError(`length must be a positive integer, got ${o.length}`);
  if (!Number.isInteger(o.index) || o.index < 0) throw new UsageError(`sample index must be an integer >= 0, got ${o.index}`);
  if (!Number.isFinite(o.seed)) throw new UsageError(`seed must be a number, got ${o.seed}`);
  if (o.depth !== undefined && !(o.depth >= 0 && o.depth <= 1)) throw new UsageError(`depth must be in [0, 1], got ${o.depth}`);
  if (o.turns !== undefined && (!Number.isInteger(o.turns) || o.turns < 1)) throw new UsageError(`turns must be a positive integer, got ${o.turns}`);
  if (task in NIAH_CONFIGS) return generateNiah(task as NiahTask, o);
  if (o.turns !== undefined && o.turns > 1) throw new UsageError(`multi-turn samples exist for the niah tasks only, not ${task}`);
  switch (task) {
    case 'vt': return generateVt(o);
    case 'cwe': return generateCwe(o);
    case 'fwe': return generateFwe(o);
    default: throw new UsageError(`unknown task '${String(task)}'; choose from: ${TASKS.join(', ')}`);
  }
}

import { listArg, intListArg } from './common.ts';
import { mkdir, open, rename } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { UsageError } from '../errors.ts';
import { modelFingerprint, validatePlan } from '../eval/runner.ts';
import { promptRecords, type PromptPlan } from '../eval/prompts.ts';
import type { TaskName } from '../eval/ruler/types.ts';
import { openModelSource } from '../model/source.ts';
import { resolveModelOption } from './default-model.ts';
import { progressBar } from './progress.ts';

export interface EvalPromptsCliOptions {
  model?: string;
  tasks: string;
  lengths: string;
  samples: number;
  seed: number;
  queryAgnostic?: boolean;
  out?: string;
}


/**
 * Writes the samples `eval ruler` would run with the same options, one JSON object per line, with
 * the token ids the engine is fed in each mode (src/eval/prompts.ts), for tools/kvpress/run_presses.py.
 */
export async function evalPromptsCommand(o: EvalPromptsCliOptions): Promise<void> {
  if (!o.out) throw new UsageError('give --out FILE.jsonl');
  const dir = await resolveModelOption(o.model);
  const source = await openModelSource(dir);
  const plan: PromptPlan = {
    tasks: listArg('tasks', o.tasks) as TaskName[],
    lengths: intListArg('lengths', o.lengths),
    samples: o.samples,
    seed: o.seed,
    mode: o.queryAgnostic ? 'query-agnostic' : 'query-aware',
  };
  // The checks of `eval ruler` for the same tasks, lengths and samples.
  validatePlan({ ...plan, methods: ['full'], budgets: [], outDir: '' }, source.config.maxPositionEmbeddings);
  const tokenizer = await source.loadTokenizer();
  // The runner names its runs after basename(resolve(engine.dir)); the engine's dir is this path.
  const model = { path: resolve(dir), name: basename(resolve(dir)), fingerprint: await modelFingerprint(dir) };
  const out = resolve(o.out);
  try {
    await mkdir(dirname(out), { recursive: true });
  } catch (e) {
    throw new UsageError(`cannot create the directory of ${o.out}: ${(e as Error).message}`);
  }
  const part = `${out}.part`;
  let f;
  try {
    f = await open(part, 'w');
  } catch (e) {
    throw new UsageError(`cannot write ${o.out}: ${(e as Error).message}`);
  }
  const total = plan.tasks.length * plan.lengths.length * plan.samples;
  const bar = progressBar('prompts');
  let done = 0;
  try {
    for (const r of promptRecords(tokenizer, model, plan)) {
      await f.write(JSON.stringify(r) + '\n');
      bar.update(++done, total);
    }
  } finally {
    bar.stop();
    await f.close();
  }
  // Renamed when complete, so a half-written file never passes for the samples.
  await rename(part, out);
  process.stderr.write(`wrote ${done} samples to ${o.out}\n`);
}

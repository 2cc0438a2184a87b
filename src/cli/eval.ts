import { dirname, join, resolve } from 'node:path';
import { access } from 'node:fs/promises';
import { Engine, readModelConfig } from '../engine/engine.ts';
import { UsageError } from '../errors.ts';
import { checkWritable, runEval, validatePlan, type EvalPlan } from '../eval/runner.ts';
import { collectResults, heatmap, writeReport, writeResultsPage } from '../eval/report.ts';
import { parseOptionPairs } from '../compress/registry.ts';
import type { TaskName } from '../eval/ruler/types.ts';
import { generateSample } from '../eval/ruler/index.ts';
import { openModelSource } from '../model/source.ts';
import { resolveModelOption } from './default-model.ts';
import { progressBar } from './progress.ts';
import { parseWeightFormat, listArg, intListArg } from './common.ts';
import { writeFile } from 'node:fs/promises';

export interface EvalCliOptions {
  model?: string;
  tasks: string;
  lengths: string;
  methods: string;
  budgets: string;
  samples: number;
  seed: number;
  out: string;
  queryAgnostic?: boolean;
  multiTurn?: boolean;
  turns?: number;
  kvOpt?: string[];
  threads?: number;
  weights?: string;
  depths?: string;
}


async function prepare(o: EvalCliOptions, tasks: TaskName[], depth?: number) {
  const dir = await resolveModelOption(o.model);
  if (o.multiTurn && o.queryAgnostic) throw new UsageError('choose one of --multi-turn and --query-agnostic');
  const cfg = await readModelConfig(dir);
  const methods = listArg('methods', o.methods);
  const plan: EvalPlan = {
    tasks,
    lengths: intListArg('lengths', o.lengths),
    methods,
    budgets: o.budgets.trim() === '' ? [] : intListArg('budgets', o.budgets),
    samples: o.samples,
    seed: o.seed,
    mode: o.multiTurn ? 'multi-turn' : o.queryAgnostic ? 'query-agnostic' : 'query-aware',
    ...(o.multiTurn ? { turns: o.turns } : {}),
    outDir: o.out,
    kvOptions: parseOptionPairs(o.kvOpt),
    ...(depth !== undefined ? { depth } : {}),
  };
  validatePlan(plan, cfg.maxPositionEmbeddings);
  await checkWritable(o.out);
  return { dir, plan };
}

async function withEngine<T>(dir: string, o: EvalCliOptions, fn: (e: Engine) => Promise<T>): Promise<T> {
  const bar = progressBar('loading');
  const engine = await Engine.load(dir, { threads: o.threads, weights: parseWeightFormat(o.weights), onProgress: (p) => bar.update(p.done, p.total) }).finally(() => bar.stop());
  try {
    return await fn(engine);
  } finally {
    await engine.close();
  }
}

export async function evalRulerCommand(o: EvalCliOptions): Promise<void> {
  const { dir, plan } = await prepare(o, listArg('tasks', o.tasks) as TaskName[]);
  await withEngine(dir, o, async (engine) => {
    const bar = progressBar('eval');
    const results = await runEval(engine, plan, (done, total) => bar.update(done, total)).finally(() => bar.stop());
    const md = await writeReport(plan.outDir, results, `RULER-style evaluation of ${engine.dir} (seed ${plan.seed}, ${plan.samples} samples per cell, ${plan.mode})`);
    process.stdout.write(md);
    process.stderr.write(`wrote ${join(plan.outDir, 'summary.md')} and plots under ${join(plan.outDir, 'plots')}\n`);
  });
}

export async function evalNiahCommand(o: EvalCliOptions): Promise<void> {
  const depths = (o.depths ?? '0,10,20,30,40,50,60,70,80,90,100').split(',').map((s) => {
    const n = Number(s);
    if (!Number.isFinite(n) || n < 0 || n > 100) throw new UsageError(`--depths takes percentages 0..100, got '${s}'`);
    return n / 100;
  });
  const tasks = listArg('tasks', o.tasks) as TaskName[];
  if (tasks.length !== 1) throw new UsageError('eval niah draws one task at a time: give one --tasks value');
  const first = await prepare(o, tasks, depths[0]);
  await withEngine(first.dir, o, async (engine) => {
    const bar = progressBar('niah');
    const all = [];
    for (const depth of depths) {
      const plan = { ...first.plan, depth };
      all.push(...(await runEval(engine, plan, (done, total) => bar.update(done, total))));
    }
    bar.stop();
    const byMethod = new Map<string, typeof all>();
    for (const r of all) {
      const k = `${r.method}__${r.budget ?? 'full'}${r.mode === 'query-aware' ? '' : `__${r.mode}`}`;
      if (!byMethod.has(k)) byMethod.set(k, []);
      byMethod.get(k)!.push(r);
    }
    for (const [k, rs] of byMethod) {
      const path = join(first.plan.outDir, `niah__${tasks[0]}__${k}.svg`);
      await writeFile(path, heatmap(`${tasks[0]}: ${k.replace(/__/g, ' ')}`, rs));
      process.stdout.write(`wrote ${path}\n`);
    }
  });
}

export interface SampleCliOptions {
  model?: string;
  task: string;
  length: number;
  seed: number;
  index: number;
  depth?: number;
}

/** Prints one task prompt (sized with the model's tokenizer) on stdout and its answer on stderr. */
export async function evalSampleCommand(o: SampleCliOptions): Promise<void> {
  const dir = await resolveModelOption(o.model);
  const source = await openModelSource(dir);
  const cfg = source.config;
  // The same checks as an evaluation of this one cell.
  validatePlan({ tasks: [o.task as TaskName], lengths: [o.length], methods: ['full'], budgets: [], samples: 1, seed: o.seed, mode: 'query-aware', outDir: '' }, cfg.maxPositionEmbeddings);
  if (o.depth !== undefined && !(o.depth >= 0 && o.depth <= 100)) throw new UsageError(`--depth takes a percentage 0..100, got ${o.depth}`);
  const tokenizer = await source.loadTokenizer();
  const s = generateSample(o.task as TaskName, {
    length: o.length, seed: o.seed, index: o.index,
    tokenizer: { encode: (t: string) => tokenizer.encode(t, { addSpecialTokens: false }) },
    ...(o.depth !== undefined ? { depth: o.depth / 100 } : {}),
  });
  process.stdout.write(s.input);
  process.stderr.write(`${o.task}, ${tokenizer.encode(s.input, { addSpecialTokens: true }).length} prompt tokens${s.depth !== undefined ? `, needle at depth ${Math.round(s.depth * 100)}%` : ''}; expected answer: ${s.references.join(', ')}\n`);
}

/** Collects finished runs from eval output directories into one results page. */
export async function evalReportCommand(dirs: string[], o: { out: string; title: string; intro: string }): Promise<void> {
  for (const d of dirs) {
    try {
      await access(d);
    } catch {
      throw new UsageError(`no eval output directory ${d}; pass directories given as --out to earlier eval runs`);
    }
  }
  const results = await collectResults(dirs);
  if (results.length === 0) throw new UsageError(`no finished runs (metrics.json) under ${dirs.join(', ')}`);
  await checkWritable(dirname(resolve(o.out)));
  await writeResultsPage(o.out, results, o.title, o.intro);
  process.stderr.write(`wrote ${o.out} from ${results.length} runs\n`);
}

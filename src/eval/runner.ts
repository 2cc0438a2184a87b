import { access, appendFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { stringify as toCsv } from 'csv-stringify/sync';
import type { Engine, Generation, PrefilledPrompt } from '../engine/engine.ts';
import type { CompressionRequest } from '../compress/registry.ts';
import { generateSample, TASKS } from './ruler/index.ts';
import type { Sample, TaskName } from './ruler/types.ts';
import { stringMatchAll } from './metrics.ts';
import { promptIds, type PromptIds } from './prompts.ts';
import { resolveCompression, methodNames, parseMethodSpec } from '../compress/registry.ts';
import { modelFingerprint } from '../model/fingerprint.ts';
import { UsageError } from '../errors.ts';

/**
 * The max_new_tokens that budget-splitting methods (rocketkv) are sized for in every task, as
 * RocketKV's official RULER config does (the task's own answer length still ends generation).
 */
export const PLAN_MAX_NEW_TOKENS = 128;

/**
 * Bumped whenever a method's rule or the evaluation's sizing changes, so that runs made before are
 * not reused as if they were made now; METHOD_RULES_CHANGED says, per method, the version in which
 * its own rule last changed, so cells of unchanged methods stay valid. 2: RocketKV stage 2 reads
 * exactly top-k tokens by a softmax over tokens; exact_topk per query head; budget splits sized for
 * PLAN_MAX_NEW_TOKENS. 3: kvcompress defaults follow the fork's fixed-size recipe (window 8,
 * max-pooled, protected 8 counted as the fork does, compressed once, budget rounded up to whole
 * blocks per head). 4: quest reads pages per query head, at least 3, the first two layers dense.
 */
export const RULES_VERSION = 4;

/** The rules version in which each method's rule last changed (methods not listed: 1). */
export const METHOD_RULES_CHANGED: Readonly<Record<string, number>> = {
  rocketkv: 2, 'rocketkv-mt': 2, hybrid: 2, exact_topk: 2, kvcompress: 3, quest: 4,
};

/** The oldest rules version whose cells of `methodSpec` (a name or `name:key=value` variant) still stand. */
export function rulesNeeded(methodSpec: string): number {
  return METHOD_RULES_CHANGED[parseMethodSpec(methodSpec).method] ?? 1;
}

/**
 * query-aware: context and question in one prompt; query-agnostic: the context is compressed before
 * the question exists; multi-turn: one context, `turns` questions asked in turn on one cache.
 */
export type EvalMode = 'query-aware' | 'query-agnostic' | 'multi-turn';

/** Questions per context in multi-turn mode unless the plan says otherwise. */
export const DEFAULT_TURNS = 3;

export interface EvalPlan {
  tasks: TaskName[];
  lengths: number[];
  /** Method names, or `name:key=value...` for a variant with its own options (parseMethodSpec). */
  methods: string[];
  budgets: number[];
  samples: number;
  seed: number;
  mode: EvalMode;
  outDir: string;
  /** Extra options for every compressed method (`key=value` from --kv-opt). */
  kvOptions?: Record<string, string>;
  /** Fixed needle depth in [0, 1] (the NIAH heatmap); random per sample otherwise. */
  depth?: number;
  /** Questions per context in multi-turn mode (default DEFAULT_TURNS). */
  turns?: number;
}

/** One (task, length, method, budget, mode) cell of the grid. */
export interface RunSpec {
  task: TaskName;
  length: number;
  method: string;
  /** null for full (one run, no budget). */
  budget: number | null;
  mode: EvalMode;
  depth?: number;
}

export interface RunMetrics {
  task: TaskName;
  length: number;
  model: string;
  method: string;
  budget: number | null;
  mode: EvalMode;
  depth: number | null;
  samples: number;
  seed: number;
  /** Mean string_match_all x 100. */
  score: number;
  /** Mean over samples of the KV bytes stored at the end, and read per decode step. */
  storedKvBytes: number;
  fullKvBytes: number;
  readBytesPerStep: number;
  /** The pool's peak bytes per sample, over the whole request and over its decode phase (absent in older runs). */
  peakKvBytes?: number;
  peakKvDecodeBytes?: number;
  tokensPerSecond: number;
  /** modelFingerprint() of the checkpoint the run used. */
  modelFingerprint?: string;
  /** In-memory weights format (f32 or q8; absent in older runs). */
  weights?: string;
  /** Kernel build the run computed with (plain or relaxed; absent in runs made before there were two). */
  kernels?: string;
  /** RULES_VERSION when the run was made (absent: before versions were recorded, i.e. 1). */
  rulesVersion?: number;
  /** Extra compression options (--kv-opt) and multi-turn questions per context, when given. */
  kvOptions?: Record<string, string>;
  turns?: number | null;
}

export { modelFingerprint } from '../model/fingerprint.ts';

/** Why a finished run in the output directory cannot stand for the one asked, or null if it can. */
function staleReason(m: RunMetrics, plan: EvalPlan, fingerprint: string, turns: number | undefined, weights: string): string | null {
  if (m.modelFingerprint !== fingerprint) {
    return m.modelFingerprint === undefined ? 'it records no model fingerprint' : `it was made with another checkpoint (fingerprint ${m.modelFingerprint}, this one ${fingerprint})`;
  }
  const made = m.rulesVersion ?? 1;
  const need = rulesNeeded(m.method);
  if (made < need) return `it was made under method rules v${made}, and ${parseMethodSpec(m.method).method}'s rule changed in v${need} (these are v${RULES_VERSION})`;
  if (m.weights !== undefined && m.weights !== weights) return `it ran on ${m.weights} weights, these are ${weights}`;
  if (m.samples !== plan.samples) return `it has ${m.samples} samples, ${plan.samples} asked`;
  if (m.seed !== plan.seed) return `it used seed ${m.seed}, ${plan.seed} asked`;
  if (JSON.stringify(m.kvOptions ?? {}) !== JSON.stringify(plan.kvOptions ?? {})) return `its --kv-opt settings differ (${JSON.stringify(m.kvOptions ?? {})})`;
  if ((m.turns ?? undefined) !== turns) return `it asked ${m.turns ?? 1} question(s) per context, ${turns ?? 1} asked`;
  return null;
}

export function runId(spec: RunSpec, model: string): string {
  // A variant's options become part of the directory name (':' is not portable there).
  const method = spec.method.replaceAll(':', '+').replace(/[^A-Za-z0-9._=+-]/g, '_');
  const parts: string[] = [spec.task, String(spec.length), model, method, spec.budget === null ? 'full' : String(spec.budget)];
  if (spec.mode !== 'query-aware') parts.push(spec.mode);
  if (spec.depth !== undefined) parts.push(`depth${Math.round(spec.depth * 100)}`);
  return parts.join('__');
}

/** Check every setting against the model before any work starts. */
export function validatePlan(plan: EvalPlan, maxContextTokens: number): void {
  for (const t of plan.tasks) if (!TASKS.includes(t)) throw new UsageError(`unknown task '${t}'; choose from: ${TASKS.join(', ')}`);
  if (plan.tasks.length === 0) throw new UsageError('no tasks given');
  if (plan.lengths.length === 0) throw new UsageError('no lengths given');
  for (const l of plan.lengths) {
    if (!Number.isInteger(l) || l <= 0) throw new UsageError(`lengths must be positive integers, got ${l}`);
    if (l > maxContextTokens) throw new UsageError(`length ${l} is larger than the model's context of ${maxContextTokens} tokens`);
  }
  if (plan.methods.length === 0) throw new UsageError('no methods given');
  if (new Set(plan.methods).size !== plan.methods.length) throw new UsageError(`a method is listed twice in '${plan.methods.join(',')}'`);
  for (const m of plan.methods) {
    const { method } = parseMethodSpec(m);
    if (!methodNames().includes(method)) throw new UsageError(`unknown KV method '${method}'; choose one of: ${methodNames().join(', ')}`);
    if (method === 'full' && m !== 'full') throw new UsageError(`full takes no options, got '${m}'`);
  }
  const compressed = plan.methods.filter((m) => m !== 'full');
  if (compressed.length > 0 && plan.budgets.length === 0) throw new UsageError('the budget list is empty: give --budgets, e.g. 64,128,256');
  for (const m of compressed) for (const b of plan.budgets) resolveCompression(kvRequest(m, b, plan.kvOptions ?? {}));
  if (!Number.isInteger(plan.samples) || plan.samples <= 0) throw new UsageError(`samples must be a positive integer, got ${plan.samples}`);
  if (plan.mode === 'multi-turn') {
    const single = plan.tasks.filter((t) => !t.startsWith('niah'));
    if (single.length) throw new UsageError(`multi-turn mode asks several questions of one niah context; ${single.join(', ')} ha${single.length > 1 ? 've' : 's'} one question: leave ${single.length > 1 ? 'them' : 'it'} out or run without --multi-turn`);
    if (plan.turns !== undefined && (!Number.isInteger(plan.turns) || plan.turns < 2)) throw new UsageError(`turns must be an integer >= 2, got ${plan.turns}`);
  }
}

export function planRuns(plan: EvalPlan): RunSpec[] {
  const runs: RunSpec[] = [];
  for (const task of plan.tasks) {
    for (const length of plan.lengths) {
      for (const method of plan.methods) {
        const budgets: (number | null)[] = method === 'full' ? [null] : plan.budgets;
        for (const budget of budgets) runs.push({ task, length, method, budget, mode: plan.mode, ...(plan.depth !== undefined ? { depth: plan.depth } : {}) });
      }
    }
  }
  return runs;
}

/** Make sure the output directory can be written, before any work. */
export async function checkWritable(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    const probe = join(dir, `.write-test-${process.pid}`);
    await writeFile(probe, '');
    const { rm } = await import('node:fs/promises');
    await rm(probe);
  } catch (e) {
    throw new UsageError(`cannot write to the output directory ${dir}: ${(e as Error).message}`);
  }
}

async function exists(p: string): Promise<boolean> {
  try { await access(p); return true; } catch { return false; }
}

export interface EvalProgress {
  (doneSamples: number, totalSamples: number, run: string): void;
}

/** One sample's outcome in one cell: a line of the cell's samples.jsonl. */
interface SampleRow {
  i: number;
  prompt_tokens: number;
  prediction: string;
  references: string;
  /** string_match_all in [0, 1] (multi-turn: the mean over turns). */
  score: number;
  stored: number;
  full: number;
  read: number;
  peak: number;
  peak_decode: number;
  tokens: number;
  decode_ms: number;
}

/** The first line of samples.jsonl: what the rows were made under. */
interface SamplesHeader {
  model_fingerprint: string;
  rules_version: number;
  samples: number;
  seed: number;
  kv_options: Record<string, string>;
  turns: number | null;
  weights: string;
}

const SAMPLES_FILE = 'samples.jsonl';

function samplesHeader(plan: EvalPlan, fingerprint: string, turns: number | undefined, weights: string): SamplesHeader {
  return { model_fingerprint: fingerprint, rules_version: RULES_VERSION, samples: plan.samples, seed: plan.seed, kv_options: plan.kvOptions ?? {}, turns: turns ?? null, weights };
}

/** Rows of an unfinished cell kept from an earlier, interrupted evaluation (by sample index). */
async function readPartial(path: string, want: SamplesHeader, rulesNeededFor: number): Promise<{ rows: Map<number, SampleRow>; stale: string | null }> {
  const rows = new Map<number, SampleRow>();
  if (!(await exists(path))) return { rows, stale: null };
  const lines = (await readFile(path, 'utf8')).split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0) return { rows, stale: null };
  let header: SamplesHeader;
  try { header = JSON.parse(lines[0]!) as SamplesHeader; } catch { return { rows, stale: `${path} does not start with a header line` }; }
  // Sample i depends on the task, length, seed and i alone, so rows stand whatever the sample count
  // (a grid grows or shrinks reusing them); a header without weights predates their recording.
  const same = (h: SamplesHeader): string => JSON.stringify({ ...h, samples: undefined, rules_version: undefined, weights: header.weights === undefined ? undefined : h.weights });
  if ((header.rules_version ?? 1) < rulesNeededFor) return { rows, stale: `its samples were made under method rules v${header.rules_version}, and the method's rule changed in v${rulesNeededFor}` };
  if (same(header) !== same(want)) return { rows, stale: `its samples were made under other settings (${JSON.stringify(header)})` };
  for (const line of lines.slice(1)) {
    // A line cut short by an interruption is skipped (its sample is redone); the file is rewritten
    // from the rows that parsed before any new row is appended.
    try { const r = JSON.parse(line) as SampleRow; rows.set(r.i, r); } catch { continue; }
  }
  return { rows, stale: null };
}

/** A group of cells that share their samples: same task, length, mode and depth. */
function groupKey(spec: RunSpec): string {
  return `${spec.task}|${spec.length}|${spec.mode}|${spec.depth ?? ''}`;
}

/**
 * Run every cell of the grid, skipping cells whose metrics.json exists (resumable). Cells that share
 * a task, length and mode run sample by sample: each sample's prompt is prefilled once and every
 * method starts from a copy of it (the same result as a run of its own, tested). Each finished
 * sample of a cell is appended to its samples.jsonl, so an interrupted evaluation resumes there.
 */
export async function runEval(engine: Engine, plan: EvalPlan, progress?: EvalProgress): Promise<RunMetrics[]> {
  const model = basename(resolve(engine.dir));
  const runs = planRuns(plan);
  const total = runs.length * plan.samples;
  let done = 0;
  const tokenizer = { encode: (t: string) => engine.tokenizer.encode(t, { addSpecialTokens: false }) };
  const fingerprint = await modelFingerprint(engine.dir);
  const turnsOf = (spec: RunSpec): number | undefined => (spec.mode === 'multi-turn' ? plan.turns ?? DEFAULT_TURNS : undefined);
  // Finished runs are reused only when they answer the same question; anything else is refused
  // before any work, so that results of another checkpoint or sample count never mix in silently.
  const finished = new Map<string, RunMetrics>();
  const partial = new Map<string, Map<number, SampleRow>>();
  const stale: string[] = [];
  for (const spec of runs) {
    const dir = join(plan.outDir, runId(spec, model));
    const metricsPath = join(dir, 'metrics.json');
    if (await exists(metricsPath)) {
      const m = JSON.parse(await readFile(metricsPath, 'utf8')) as RunMetrics;
      const why = staleReason(m, plan, fingerprint, turnsOf(spec), engine.weightFormat);
      // Another sample count with the rows at hand: the cell is redone from its rows (more samples
      // run only the new ones), not refused.
      const resizable = why !== null && m.samples !== plan.samples && staleReason({ ...m, samples: plan.samples }, plan, fingerprint, turnsOf(spec), engine.weightFormat) === null
        && (await exists(join(dir, SAMPLES_FILE)));
      if (!why) { finished.set(runId(spec, model), m); continue; }
      if (!resizable) { stale.push(`${runId(spec, model)}: ${why}`); continue; }
    }
    const p = await readPartial(join(dir, SAMPLES_FILE), samplesHeader(plan, fingerprint, turnsOf(spec), engine.weightFormat), rulesNeeded(spec.method));
    if (p.stale) stale.push(`${runId(spec, model)}: ${p.stale}`);
    else partial.set(runId(spec, model), p.rows);
  }
  if (stale.length) {
    throw new UsageError(`${plan.outDir} holds ${stale.length} run(s), finished or not, that do not match this evaluation (first: ${stale[0]}); give another --out, or delete those runs to redo them`);
  }
  const byId = new Map<string, RunMetrics>();
  const groups = new Map<string, RunSpec[]>();
  for (const spec of runs) {
    const id = runId(spec, model);
    const reuse = finished.get(id);
    if (reuse) {
      byId.set(id, reuse);
      done += plan.samples;
      progress?.(done, total, id);
      continue;
    }
    const have = [...partial.get(id)!.keys()].filter((i) => i < plan.samples).length;
    done += have;
    if (have) progress?.(done, total, id);
    const g = groups.get(groupKey(spec)) ?? [];
    g.push(spec);
    groups.set(groupKey(spec), g);
  }
  // Cells of one group start from one prefill, which keeps query statistics from one row on.
  for (const specs of groups.values()) {
    const skips = new Set(specs.map((spec) => engine.prefillNeeds(specRequest(spec, plan.kvOptions ?? {}), spec.length, PLAN_MAX_NEW_TOKENS).queryStatsSkip).filter((x) => x !== null));
    if (skips.size > 1) throw new UsageError(`methods of one evaluation keep query statistics from different rows (${[...skips].join(', ')}: n_sink of expected_attention); run them in separate evaluations`);
  }
  for (const specs of groups.values()) {
    const first = specs[0]!;
    const turns = turnsOf(first);
    await mkdir(plan.outDir, { recursive: true });
    for (const spec of specs) {
      const dir = join(plan.outDir, runId(spec, model));
      await mkdir(dir, { recursive: true });
      // Header and the rows kept so far, rewritten whole: a line an interruption cut short goes.
      const kept = [...partial.get(runId(spec, model))!.values()].sort((a, b) => a.i - b.i);
      const text = [samplesHeader(plan, fingerprint, turns, engine.weightFormat), ...kept].map((x) => JSON.stringify(x)).join('\n') + '\n';
      await writeFile(join(dir, `${SAMPLES_FILE}.part`), text);
      await rename(join(dir, `${SAMPLES_FILE}.part`), join(dir, SAMPLES_FILE));
    }
    for (let i = 0; i < plan.samples; i++) {
      const needing = specs.filter((spec) => !partial.get(runId(spec, model))!.has(i));
      if (needing.length === 0) continue;
      const sample = generateSample(first.task, {
        length: first.length, seed: plan.seed, index: i, tokenizer,
        ...(first.depth !== undefined ? { depth: first.depth } : {}), ...(turns !== undefined ? { turns } : {}),
      });
      const ids = promptIds(engine.tokenizer, sample);
      const needs = needing.map((spec) => engine.prefillNeeds(specRequest(spec, plan.kvOptions ?? {}), ids.input.length, PLAN_MAX_NEW_TOKENS));
      const skips = [...new Set(needs.map((n) => n.queryStatsSkip).filter((s) => s !== null))];
      const prefix = await engine.prefill({ tokens: first.mode === 'query-agnostic' ? ids.context : ids.input }, {
        window: Math.max(0, ...needs.map((n) => n.window)),
        queryStatsSkip: skips[0] ?? null,
      });
      try {
        for (const spec of needing) {
          const id = runId(spec, model);
          const r = await answer(engine, sample, ids, spec, plan.kvOptions ?? {}, prefix);
          const refs = sample.turns ? sample.turns.map((t) => t.references.join(' | ')).join(' || ') : sample.references.join(' | ');
          const row: SampleRow = {
            i, prompt_tokens: r.promptTokens, prediction: r.prediction, references: refs,
            score: r.score ?? stringMatchAll(r.prediction, sample.references),
            stored: r.stats.kv.storedBytes, full: r.stats.kv.fullBytes, read: r.stats.kv.readPerStep.total,
            peak: r.stats.kv.poolPeakBytes, peak_decode: r.stats.kv.poolPeakDecodeBytes,
            tokens: r.stats.generatedTokens, decode_ms: r.stats.decodeMs,
          };
          partial.get(id)!.set(i, row);
          await appendFile(join(plan.outDir, id, SAMPLES_FILE), JSON.stringify(row) + '\n');
          done++;
          progress?.(done, total, id);
        }
      } finally {
        prefix.release();
      }
    }
    for (const spec of specs) byId.set(runId(spec, model), await finishCell(engine, plan, spec, model, fingerprint, turns, partial.get(runId(spec, model))!));
  }
  return runs.map((spec) => byId.get(runId(spec, model))!);
}

/** Write a cell's predictions.csv, config.yaml and (last, atomically) metrics.json from its rows. */
async function finishCell(
  engine: Engine, plan: EvalPlan, spec: RunSpec, model: string, fingerprint: string, turns: number | undefined, rowsByIndex: Map<number, SampleRow>,
): Promise<RunMetrics> {
  const dir = join(plan.outDir, runId(spec, model));
  const metricsPath = join(dir, 'metrics.json');
  const rows = Array.from({ length: plan.samples }, (_, i) => rowsByIndex.get(i)!);
  const n = plan.samples;
  const sum = (f: (r: SampleRow) => number): number => rows.reduce((a, r) => a + f(r), 0);
  const tokens = sum((r) => r.tokens);
  const decodeMs = sum((r) => r.decode_ms);
  const metrics: RunMetrics = {
    task: spec.task,
    length: spec.length,
    model,
    method: spec.method,
    budget: spec.budget,
    mode: spec.mode,
    depth: spec.depth ?? null,
    samples: n,
    seed: plan.seed,
    score: (sum((r) => r.score) / n) * 100,
    storedKvBytes: sum((r) => r.stored) / n,
    fullKvBytes: sum((r) => r.full) / n,
    readBytesPerStep: sum((r) => r.read) / n,
    peakKvBytes: sum((r) => r.peak) / n,
    peakKvDecodeBytes: sum((r) => r.peak_decode) / n,
    tokensPerSecond: decodeMs > 0 ? (tokens / decodeMs) * 1000 : 0,
    modelFingerprint: fingerprint,
    weights: engine.weightFormat,
    kernels: engine.runtime.kernelBuild,
    rulesVersion: RULES_VERSION,
    ...(plan.kvOptions && Object.keys(plan.kvOptions).length ? { kvOptions: plan.kvOptions } : {}),
    turns: turns ?? null,
  };
  const table: (string | number)[][] = [['id', 'prompt_tokens', 'prediction', 'references', 'score']];
  for (const r of rows) table.push([r.i, r.prompt_tokens, r.prediction, r.references, r.score * 100]);
  await writeFile(join(dir, 'predictions.csv'), toCsv(table));
  await writeFile(join(dir, 'config.yaml'), toYaml({
    model: resolve(engine.dir), model_fingerprint: fingerprint, task: spec.task, length: spec.length, method: spec.method, budget: spec.budget,
    kv_options: plan.kvOptions ?? {}, mode: spec.mode, depth: spec.depth ?? null, samples: n, seed: plan.seed,
    ...(turns !== undefined ? { turns } : {}),
    weights: engine.weightFormat, kernels: engine.runtime.kernelBuild, sampling: 'greedy',
  }));
  await writeFile(`${metricsPath}.part`, JSON.stringify(metrics, null, 2) + '\n');
  await rename(`${metricsPath}.part`, metricsPath);
  return metrics;
}

interface Answer {
  prediction: string;
  stats: NonNullable<Generation['stats']>;
  promptTokens: number;
  /** Multi-turn: mean string_match_all over the turns (each against its own references). */
  score?: number;
}

/** The request of one method (or `name:key=value` variant) at one budget: --kv-opt first, the variant's own options over it. */
function kvRequest(methodSpec: string, budget: number, kvOptions: Record<string, string>): CompressionRequest {
  const { method, options } = parseMethodSpec(methodSpec);
  return { ...kvOptions, ...options, method, budget };
}

function specRequest(spec: RunSpec, kvOptions: Record<string, string>): CompressionRequest {
  return spec.budget === null ? { method: 'full' } : kvRequest(spec.method, spec.budget, kvOptions);
}

/**
 * One sample of one cell, started from `prefix`: the sample's prompt (query-aware, multi-turn) or
 * its context (query-agnostic) prefilled once for every cell of the group.
 */
async function answer(engine: Engine, sample: Sample, ids: PromptIds, spec: RunSpec, kvOptions: Record<string, string>, prefix: PrefilledPrompt): Promise<Answer> {
  const kv = specRequest(spec, kvOptions);
  // The ids come from promptIds, which `eval prompts` writes out for other libraries to run.
  const promptTokens = ids.input.length;
  if (spec.mode === 'multi-turn') return multiTurn(engine, sample, ids, kv, prefix);
  if (spec.mode === 'query-aware') {
    const g = engine.generate({ tokens: ids.input }, { maxTokens: sample.maxNewTokens, temperature: 0, kv, kvPlanMaxNewTokens: PLAN_MAX_NEW_TOKENS, from: prefix });
    for await (const _ of g) { /* drain */ }
    return { prediction: g.text, stats: g.stats!, promptTokens };
  }
  // Query-agnostic: the context is compressed before the question exists, then the question is appended.
  // Size the method for the whole request (context + question + answer), as the query-aware run is.
  const conv = engine.conversation(kv, { promptTokens: promptTokens, maxNewTokens: PLAN_MAX_NEW_TOKENS });
  try {
    const ctx = conv.send({ tokens: ids.context }, { maxTokens: 0, from: prefix });
    for await (const _ of ctx) { /* prefill + eviction only */ }
    const q = conv.send({ tokens: ids.question }, { maxTokens: sample.maxNewTokens, temperature: 0, skipEviction: true });
    for await (const _ of q) { /* drain */ }
    return { prediction: q.text, stats: q.stats!, promptTokens };
  } finally {
    conv.close();
  }
}

/**
 * One context, several questions on one cache: the first turn is the sample's own prompt (context,
 * question, answer prefix); each later turn appends its question and answer prefix after the
 * previous reply (whose </s> stays in the cache). Eviction methods compress after each turn's
 * prompt, as in any conversation; rocketkv-mt keeps everything and re-selects per turn.
 */
async function multiTurn(engine: Engine, sample: Sample, ids: PromptIds, kv: CompressionRequest, prefix: PrefilledPrompt): Promise<Answer> {
  const turns = sample.turns!;
  const firstPromptTokens = ids.input.length;
  const later = turns.slice(1).map((t) => engine.tokenizer.encode(t.question + t.answerPrefix, { addSpecialTokens: false }));
  const promptTokens = firstPromptTokens + later.reduce((n, t) => n + t.length, 0);
  const conv = engine.conversation(kv, { promptTokens, maxNewTokens: PLAN_MAX_NEW_TOKENS });
  try {
    const predictions: string[] = [];
    let score = 0;
    let stats: NonNullable<Generation['stats']> | null = null;
    let readTotal = 0;
    for (let k = 0; k < turns.length; k++) {
      const g = conv.send({ tokens: k === 0 ? ids.input : later[k - 1]! }, { maxTokens: sample.maxNewTokens, temperature: 0, ...(k === 0 ? { from: prefix } : {}) });
      for await (const _ of g) { /* drain */ }
      predictions.push(g.text);
      score += stringMatchAll(g.text, turns[k]!.references);
      const st = g.stats!;
      readTotal += st.kv.readPerStep.total;
      stats = stats === null ? st : { ...st, generatedTokens: stats.generatedTokens + st.generatedTokens, decodeMs: stats.decodeMs + st.decodeMs };
    }
    // Stored bytes: at the end of the conversation; bytes read per step: the mean over turns.
    stats = { ...stats!, kv: { ...stats!.kv, readPerStep: { ...stats!.kv.readPerStep, total: readTotal / turns.length } } };
    return { prediction: predictions.join(' || '), stats, promptTokens, score: score / turns.length };
  } finally {
    conv.close();
  }
}

import { createHash } from 'node:crypto';
import { access, mkdir, open, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { stringify as toCsv } from 'csv-stringify/sync';
import type { Engine, Generation } from '../engine/engine.ts';
import type { CompressionRequest } from '../compress/registry.ts';
import { generateSample, TASKS } from './ruler/index.ts';
import type { Sample, TaskName } from './ruler/types.ts';
import { stringMatchAll } from './metrics.ts';
import { promptIds } from './prompts.ts';
import { resolveCompression, methodNames, parseMethodSpec } from '../compress/registry.ts';
import { UsageError } from '../errors.ts';

/**
 * The max_new_tokens that budget-splitting methods (rocketkv) are sized for in every task, as
 * RocketKV's official RULER config does (the task's own answer length still ends generation).
 */
export const PLAN_MAX_NEW_TOKENS = 128;

/**
 * Bumped whenever a method's rule or the evaluation's sizing changes, so that runs made before are
 * not reused as if they were made now. 2: RocketKV stage 2 reads exactly top-k tokens by a softmax
 * over tokens; exact_topk per query head; budget splits sized for PLAN_MAX_NEW_TOKENS.
 */
export const RULES_VERSION = 2;

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
  /** RULES_VERSION when the run was made (absent: before versions were recorded, i.e. 1). */
  rulesVersion?: number;
  /** Extra compression options (--kv-opt) and multi-turn questions per context, when given. */
  kvOptions?: Record<string, string>;
  turns?: number | null;
}

/**
 * A short hash that tells checkpoints apart without reading all of them: for config.json,
 * tokenizer.json and every weights file (*.safetensors, *.gguf) in the directory, its name, its size
 * and its first and last MiB. A retrained model of the same shape differs in the first MiB already.
 */
export async function modelFingerprint(modelPath: string): Promise<string> {
  const h = createHash('sha256');
  // A GGUF model is one file: it is fingerprinted alone.
  const isFile = (await stat(modelPath)).isFile();
  const dir = isFile ? dirname(modelPath) : modelPath;
  const names = isFile ? [basename(modelPath)]
    : (await readdir(dir)).filter((n) => n === 'config.json' || n === 'tokenizer.json' || n.endsWith('.safetensors') || n.endsWith('.gguf')).sort();
  const MIB = 1 << 20;
  for (const name of names) {
    const path = join(dir, name);
    const { size } = await stat(path);
    h.update(`${name}\0${size}\0`);
    const f = await open(path, 'r');
    try {
      const ranges: [number, number][] = size > 2 * MIB ? [[0, MIB], [size - MIB, MIB]] : [[0, size]];
      for (const [start, length] of ranges) {
        const buf = Buffer.alloc(length);
        await f.read(buf, 0, length, start);
        h.update(buf);
      }
    } finally {
      await f.close();
    }
  }
  return h.digest('hex').slice(0, 16);
}

/** Why a finished run in the output directory cannot stand for the one asked, or null if it can. */
function staleReason(m: RunMetrics, plan: EvalPlan, fingerprint: string, turns: number | undefined): string | null {
  if (m.modelFingerprint !== fingerprint) {
    return m.modelFingerprint === undefined ? 'it records no model fingerprint' : `it was made with another checkpoint (fingerprint ${m.modelFingerprint}, this one ${fingerprint})`;
  }
  if ((m.rulesVersion ?? 1) !== RULES_VERSION) return `it was made under method rules v${m.rulesVersion ?? 1}, these are v${RULES_VERSION} (the method rules changed since)`;
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

/** Run every cell of the grid, skipping cells whose metrics.json exists (resumable). */
export async function runEval(engine: Engine, plan: EvalPlan, progress?: EvalProgress): Promise<RunMetrics[]> {
  const model = basename(resolve(engine.dir));
  const runs = planRuns(plan);
  const total = runs.length * plan.samples;
  let done = 0;
  const results: RunMetrics[] = [];
  const tokenizer = { encode: (t: string) => engine.tokenizer.encode(t, { addSpecialTokens: false }) };
  const fingerprint = await modelFingerprint(engine.dir);
  // Finished runs are reused only when they answer the same question; anything else is refused
  // before any work, so that results of another checkpoint or sample count never mix in silently.
  const finished = new Map<string, RunMetrics>();
  const stale: string[] = [];
  for (const spec of runs) {
    const metricsPath = join(plan.outDir, runId(spec, model), 'metrics.json');
    if (!(await exists(metricsPath))) continue;
    const m = JSON.parse(await readFile(metricsPath, 'utf8')) as RunMetrics;
    const why = staleReason(m, plan, fingerprint, spec.mode === 'multi-turn' ? plan.turns ?? DEFAULT_TURNS : undefined);
    if (why) stale.push(`${runId(spec, model)}: ${why}`);
    else finished.set(metricsPath, m);
  }
  if (stale.length) {
    throw new UsageError(`${plan.outDir} holds ${stale.length} finished run(s) that do not match this evaluation (first: ${stale[0]}); give another --out, or delete those runs to redo them`);
  }
  for (const spec of runs) {
    const dir = join(plan.outDir, runId(spec, model));
    const metricsPath = join(dir, 'metrics.json');
    const reuse = finished.get(metricsPath);
    if (reuse) {
      results.push(reuse);
      done += plan.samples;
      progress?.(done, total, runId(spec, model));
      continue;
    }
    const rows: (string | number)[][] = [['id', 'prompt_tokens', 'prediction', 'references', 'score']];
    let scoreSum = 0;
    let stored = 0;
    let full = 0;
    let read = 0;
    let peak = 0;
    let peakDecode = 0;
    let tokens = 0;
    let decodeMs = 0;
    const turns = spec.mode === 'multi-turn' ? plan.turns ?? DEFAULT_TURNS : undefined;
    for (let i = 0; i < plan.samples; i++) {
      const sample = generateSample(spec.task, {
        length: spec.length, seed: plan.seed, index: i, tokenizer,
        ...(spec.depth !== undefined ? { depth: spec.depth } : {}), ...(turns !== undefined ? { turns } : {}),
      });
      const r = await answer(engine, sample, spec, plan.kvOptions ?? {});
      const score = r.score ?? stringMatchAll(r.prediction, sample.references);
      scoreSum += score;
      stored += r.stats.kv.storedBytes;
      full += r.stats.kv.fullBytes;
      read += r.stats.kv.readPerStep.total;
      peak += r.stats.kv.poolPeakBytes;
      peakDecode += r.stats.kv.poolPeakDecodeBytes;
      tokens += r.stats.generatedTokens;
      decodeMs += r.stats.decodeMs;
      const refs = sample.turns ? sample.turns.map((t) => t.references.join(' | ')).join(' || ') : sample.references.join(' | ');
      rows.push([i, r.promptTokens, r.prediction, refs, score * 100]);
      done++;
      progress?.(done, total, runId(spec, model));
    }
    const n = plan.samples;
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
      score: (scoreSum / n) * 100,
      storedKvBytes: stored / n,
      fullKvBytes: full / n,
      readBytesPerStep: read / n,
      peakKvBytes: peak / n,
      peakKvDecodeBytes: peakDecode / n,
      tokensPerSecond: decodeMs > 0 ? (tokens / decodeMs) * 1000 : 0,
      modelFingerprint: fingerprint,
      rulesVersion: RULES_VERSION,
      ...(plan.kvOptions && Object.keys(plan.kvOptions).length ? { kvOptions: plan.kvOptions } : {}),
      turns: turns ?? null,
    };
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'predictions.csv'), toCsv(rows));
    await writeFile(join(dir, 'config.yaml'), toYaml({
      model: resolve(engine.dir), model_fingerprint: fingerprint, task: spec.task, length: spec.length, method: spec.method, budget: spec.budget,
      kv_options: plan.kvOptions ?? {}, mode: spec.mode, depth: spec.depth ?? null, samples: n, seed: plan.seed,
      ...(turns !== undefined ? { turns } : {}),
      weights: engine.weightFormat, sampling: 'greedy',
    }));
    // metrics.json last, written atomically: its presence marks the run finished.
    await writeFile(`${metricsPath}.part`, JSON.stringify(metrics, null, 2) + '\n');
    await rename(`${metricsPath}.part`, metricsPath);
    results.push(metrics);
  }
  return results;
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

async function answer(engine: Engine, sample: Sample, spec: RunSpec, kvOptions: Record<string, string>): Promise<Answer> {
  const kv = spec.budget === null ? { method: 'full' } : kvRequest(spec.method, spec.budget, kvOptions);
  // The ids come from promptIds, which `eval prompts` writes out for other libraries to run.
  const ids = promptIds(engine.tokenizer, sample);
  const promptTokens = ids.input.length;
  if (spec.mode === 'multi-turn') return multiTurn(engine, sample, kv, promptTokens);
  if (spec.mode === 'query-aware') {
    const g = engine.generate({ tokens: ids.input }, { maxTokens: sample.maxNewTokens, temperature: 0, kv, kvPlanMaxNewTokens: PLAN_MAX_NEW_TOKENS });
    for await (const _ of g) { /* drain */ }
    return { prediction: g.text, stats: g.stats!, promptTokens };
  }
  // Query-agnostic: the context is compressed before the question exists, then the question is appended.
  // Size the method for the whole request (context + question + answer), as the query-aware run is.
  const conv = engine.conversation(kv, { promptTokens: promptTokens, maxNewTokens: PLAN_MAX_NEW_TOKENS });
  try {
    const ctx = conv.send({ tokens: ids.context }, { maxTokens: 0 });
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
async function multiTurn(engine: Engine, sample: Sample, kv: CompressionRequest, firstPromptTokens: number): Promise<Answer> {
  const turns = sample.turns!;
  const later = turns.slice(1).map((t) => engine.tokenizer.encode(t.question + t.answerPrefix, { addSpecialTokens: false }));
  const promptTokens = firstPromptTokens + later.reduce((n, t) => n + t.length, 0);
  const conv = engine.conversation(kv, { promptTokens, maxNewTokens: PLAN_MAX_NEW_TOKENS });
  try {
    const predictions: string[] = [];
    let score = 0;
    let stats: NonNullable<Generation['stats']> | null = null;
    let readTotal = 0;
    for (let k = 0; k < turns.length; k++) {
      const g = conv.send(k === 0 ? sample.input : { tokens: later[k - 1]! }, { maxTokens: sample.maxNewTokens, temperature: 0 });
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

import { benchKernels } from '../bench/kernels.ts';
import { benchDecode } from '../bench/decode.ts';
import { availableParallelism } from 'node:os';
import { parseWeightFormat } from './common.ts';
import { kvRequestFromFlags } from './run.ts';
import { resolveCompression, type CompressionRequest } from '../compress/registry.ts';
import { benchModelLengths, writeModelBenchJson } from '../bench/model.ts';
import { resolveModelOption } from './default-model.ts';
import { UsageError } from '../errors.ts';
import { benchHttp } from '../bench/http.ts';
import { benchServe } from '../bench/serve.ts';
import { listArg, parseBytes } from './common.ts';
import { writeFileSync } from 'node:fs';

const log = (line: string): void => { process.stdout.write(line + '\n'); };

export async function benchKernelsCommand(opts: { threads?: number }): Promise<void> {
  await benchKernels({ threads: opts.threads ?? availableParallelism(), log });
}

export async function benchDecodeCommand(opts: { model?: string; shape: string; context: number; steps: number; weights: string; threads?: number; methods: string; kvBudget?: string; kvOpt?: string[]; batch?: number; referenceContext?: number }): Promise<void> {
  const methods = opts.methods.split(',').map((m) => m.trim()).filter(Boolean).map((m) => kvRequestFromFlags(m, m === 'full' ? undefined : opts.kvBudget, m === 'full' ? undefined : opts.kvOpt));
  for (const m of methods) resolveCompression(m);
  await benchDecode({
    methods,
    shape: opts.shape,
    model: opts.model === undefined ? undefined : await resolveModelOption(opts.model),
    contextTokens: opts.context,
    steps: opts.steps,
    weights: parseWeightFormat(opts.weights) ?? 'q8',
    threads: opts.threads,
    batch: opts.batch,
    referenceContext: opts.referenceContext,
    log,
  });
}

export async function benchModelCommand(opts: {
  model?: string; promptTokens: string; genTokens: number; rounds: number; threads?: number; weights?: string;
  peer: string; kvMethod: string; kvBudget?: string; kvOpt?: string[]; beside?: string; json?: string;
}): Promise<void> {
  if (opts.peer !== 'llama.cpp' && opts.peer !== 'none') throw new UsageError(`--peer must be llama.cpp or none, got '${opts.peer}'`);
  const lengths = String(opts.promptTokens).split(',').map((v) => v.trim()).filter(Boolean).map(Number);
  if (lengths.length === 0 || lengths.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new UsageError(`--prompt-tokens must be one or more positive integers separated by commas (e.g. 1024,4096,16384), got '${opts.promptTokens}'`);
  }
  const kv = kvRequestFromFlags(opts.kvMethod, opts.kvBudget, opts.kvOpt);
  resolveCompression(kv);
  let beside: CompressionRequest | undefined;
  if (opts.beside !== undefined) {
    const m = /^([A-Za-z0-9_+-]+)@(\d+)$/.exec(opts.beside.trim());
    if (!m) throw new UsageError(`--beside must be METHOD@BUDGET (e.g. rocketkv@256), got '${opts.beside}'`);
    beside = kvRequestFromFlags(m[1]!, m[2]!, []);
    resolveCompression(beside);
  }
  const reports = await benchModelLengths({
    model: await resolveModelOption(opts.model),
    promptTokens: lengths,
    genTokens: opts.genTokens,
    rounds: opts.rounds,
    threads: opts.threads,
    weights: parseWeightFormat(opts.weights),
    peer: opts.peer,
    kv,
    beside,
    log,
  });
  if (opts.json) {
    // One length: its report; several: an array of them, in the order asked.
    writeModelBenchJson(opts.json, reports.length === 1 ? reports[0]! : reports);
    log(`figures written to ${opts.json}`);
  }
}

/** METHOD, METHOD@BUDGET or METHOD@RATEx (budget = prompt tokens / rate, rounded up). */
export function serveMethod(spec: string, promptTokens: number): CompressionRequest {
  const m = /^([A-Za-z0-9_+-]+)(?:@(\d+)(x?))?$/.exec(spec);
  if (!m) throw new UsageError(`--methods items must be METHOD, METHOD@BUDGET or METHOD@RATEx (e.g. kvcompress@64x), got '${spec}'`);
  if (m[2] === undefined) return kvRequestFromFlags(m[1]!, undefined, []);
  const n = Number(m[2]);
  if (!(n > 0)) throw new UsageError(`--methods: the budget or rate in '${spec}' must be positive`);
  return kvRequestFromFlags(m[1]!, String(m[3] ? Math.ceil(promptTokens / n) : n), []);
}

/** Flags that bench serve and bench http share. */
interface LoadBenchFlags {
  model?: string; kvMemory: string; promptTokens: number; newTokens: number; methods: string;
  rounds: number; threads?: number; weights?: string; json?: string;
}

/** The shared flags checked and resolved, before any model is loaded. */
async function loadBenchSettings(opts: LoadBenchFlags) {
  const methods = listArg('methods', opts.methods).map((s) => serveMethod(s, opts.promptTokens));
  for (const m of methods) resolveCompression(m);
  return {
    model: await resolveModelOption(opts.model),
    kvMemoryBytes: parseBytes('kv-memory', opts.kvMemory),
    promptTokens: opts.promptTokens,
    newTokens: opts.newTokens,
    methods,
    rounds: opts.rounds,
    threads: opts.threads,
    weights: parseWeightFormat(opts.weights),
    log,
  };
}

function writeJson(file: string | undefined, report: unknown): void {
  if (!file) return;
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  log(`figures written to ${file}`);
}

export async function benchServeCommand(opts: LoadBenchFlags & { requests: number; synthetic?: boolean }): Promise<void> {
  const report = await benchServe({ ...(await loadBenchSettings(opts)), requests: opts.requests, synthetic: opts.synthetic ?? false });
  writeJson(opts.json, report);
}

export async function benchHttpCommand(opts: LoadBenchFlags & { clients: number }): Promise<void> {
  const report = await benchHttp({ ...(await loadBenchSettings(opts)), clients: opts.clients });
  writeJson(opts.json, report);
}

import { benchKernels } from '../bench/kernels.ts';
import { benchDecode } from '../bench/decode.ts';
import { availableParallelism } from 'node:os';
import { parseWeightFormat } from './common.ts';
import { kvRequestFromFlags } from './run.ts';
import { resolveCompression, type CompressionRequest } from '../compress/registry.ts';
import { benchModelLengths, writeModelBenchJson } from '../bench/model.ts';
import { resolveModelOption } from './default-model.ts';
import { UsageError } from '../errors.ts';

const log = (line: string): void => { process.stdout.write(line + '\n'); };

export async function benchKernelsCommand(opts: { threads?: number }): Promise<void> {
  await benchKernels({ threads: opts.threads ?? availableParallelism(), log });
}

export async function benchDecodeCommand(opts: { model?: string; shape: string; context: number; steps: number; weights: string; threads?: number; methods: string; kvBudget?: string; kvOpt?: string[] }): Promise<void> {
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

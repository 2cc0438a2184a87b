import { benchKernels } from '../bench/kernels.ts';
import { benchDecode } from '../bench/decode.ts';
import { availableParallelism } from 'node:os';
import { parseWeightFormat } from './common.ts';
import { kvRequestFromFlags } from './run.ts';
import { resolveCompression } from '../compress/registry.ts';
import { benchModel, writeModelBenchJson } from '../bench/model.ts';
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
  model?: string; promptTokens: number; genTokens: number; rounds: number; threads?: number; weights?: string;
  peer: string; kvMethod: string; kvBudget?: string; kvOpt?: string[]; json?: string;
}): Promise<void> {
  if (opts.peer !== 'llama.cpp' && opts.peer !== 'none') throw new UsageError(`--peer must be llama.cpp or none, got '${opts.peer}'`);
  const kv = kvRequestFromFlags(opts.kvMethod, opts.kvBudget, opts.kvOpt);
  resolveCompression(kv);
  const report = await benchModel({
    model: await resolveModelOption(opts.model),
    promptTokens: opts.promptTokens,
    genTokens: opts.genTokens,
    rounds: opts.rounds,
    threads: opts.threads,
    weights: parseWeightFormat(opts.weights),
    peer: opts.peer,
    kv,
    log,
  });
  if (opts.json) {
    writeModelBenchJson(opts.json, report);
    log(`figures written to ${opts.json}`);
  }
}

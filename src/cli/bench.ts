import { benchKernels } from '../bench/kernels.ts';
import { benchDecode } from '../bench/decode.ts';
import { availableParallelism } from 'node:os';
import { parseWeightFormat } from './common.ts';
import { kvRequestFromFlags } from './run.ts';
import { resolveCompression } from '../compress/registry.ts';

const log = (line: string): void => { process.stdout.write(line + '\n'); };

export async function benchKernelsCommand(opts: { threads?: number }): Promise<void> {
  await benchKernels({ threads: opts.threads ?? availableParallelism(), log });
}

export async function benchDecodeCommand(opts: { shape: string; context: number; steps: number; weights: string; threads?: number; methods: string; kvBudget?: string; kvOpt?: string[] }): Promise<void> {
  const methods = opts.methods.split(',').map((m) => m.trim()).filter(Boolean).map((m) => kvRequestFromFlags(m, m === 'full' ? undefined : opts.kvBudget, m === 'full' ? undefined : opts.kvOpt));
  for (const m of methods) resolveCompression(m);
  await benchDecode({
    methods,
    shape: opts.shape,
    contextTokens: opts.context,
    steps: opts.steps,
    weights: parseWeightFormat(opts.weights) ?? 'q8',
    threads: opts.threads,
    log,
  });
}

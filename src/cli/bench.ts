import { benchKernels } from '../bench/kernels.ts';
import { benchDecode } from '../bench/decode.ts';
import { availableParallelism } from 'node:os';
import { parseWeightFormat } from './common.ts';

const log = (line: string): void => { process.stdout.write(line + '\n'); };

export async function benchKernelsCommand(opts: { threads?: number }): Promise<void> {
  await benchKernels({ threads: opts.threads ?? availableParallelism(), log });
}

export async function benchDecodeCommand(opts: { shape: string; context: number; steps: number; weights: string; threads?: number }): Promise<void> {
  await benchDecode({
    shape: opts.shape,
    contextTokens: opts.context,
    steps: opts.steps,
    weights: parseWeightFormat(opts.weights) ?? 'q8',
    threads: opts.threads,
    log,
  });
}

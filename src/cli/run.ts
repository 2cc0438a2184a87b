import { readFile } from 'node:fs/promises';
import { Engine, type PromptInput } from '../engine/engine.ts';
import { UsageError } from '../errors.ts';
import { fmtBytes } from '../kv/pool.ts';
import type { KvReport } from '../engine/report.ts';
import { resolveModelOption } from './default-model.ts';
import { progressBar } from './progress.ts';
import { parseBytes, parseWeightFormat } from './common.ts';
import { parseOptionPairs, resolveCompression, type CompressionRequest } from '../compress/registry.ts';

/** The model, engine and KV flags that run and serve share. */
export interface EngineFlags {
  model?: string;
  threads?: number;
  weights?: string;
  ctx?: number;
  kvMemory?: string;
  kvMethod: string;
  kvBudget?: string;
  kvOpt?: string[];
}

export interface RunOptions extends EngineFlags {
  file?: string;
  chat?: boolean;
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  stop?: string[];
}

/** The CLI's --kv-* flags as a library request; numbers stay strings until the registry checks them. */
export function kvRequestFromFlags(method: string, budget: string | undefined, opts: string[] | undefined): CompressionRequest {
  const b = budget === undefined ? undefined : /^\s*-?\d+(\.\d+)?\s*$/.test(budget) ? Number(budget) : budget;
  return { ...parseOptionPairs(opts), method, budget: b as number | undefined };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function readPrompt(arg: string | undefined, file: string | undefined): Promise<string> {
  if (arg !== undefined && file !== undefined) throw new UsageError('give the prompt either as an argument or with --file, not both');
  if (arg !== undefined) return arg;
  if (file !== undefined) {
    try {
      return await readFile(file, 'utf8');
    } catch (e) {
      throw new UsageError(`cannot read prompt file ${file}: ${(e as Error).message}`);
    }
  }
  if (process.stdin.isTTY) throw new UsageError('no prompt: pass it as an argument, with --file, or on stdin');
  return readStdin();
}

export async function runCommand(promptArg: string | undefined, opts: RunOptions): Promise<void> {
  const weights = parseWeightFormat(opts.weights);
  const kv = kvRequestFromFlags(opts.kvMethod, opts.kvBudget, opts.kvOpt);
  resolveCompression(kv); // every KV setting is checked before any work starts
  const text = await readPrompt(promptArg, opts.file);
  const dir = await resolveModelOption(opts.model);
  const bar = progressBar('loading');
  const engine = await Engine.load(dir, {
    threads: opts.threads,
    weights,
    maxContextTokens: opts.ctx,
    kvMemoryBytes: opts.kvMemory === undefined ? undefined : parseBytes('kv-memory', opts.kvMemory),
    onProgress: (p) => bar.update(p.done, p.total),
  }).finally(() => bar.stop());
  try {
    const input: PromptInput = opts.chat ? { messages: [{ role: 'user', content: text }] } : text;
    const prefillBar = progressBar('prefill');
    const gen = engine.generate(input, {
      maxTokens: opts.maxTokens,
      temperature: opts.temperature,
      topK: opts.topK,
      topP: opts.topP,
      seed: opts.seed,
      stop: opts.stop,
      onPrefillProgress: (done, total) => { if (total > 512) prefillBar.update(done, total); },
      kv,
    });
    let first = true;
    for await (const ev of gen) {
      if (first) { prefillBar.stop(); first = false; }
      process.stdout.write(ev.text);
    }
    prefillBar.stop();
    process.stdout.write('\n');
    const s = gen.stats!;
    const decodeTps = s.generatedTokens > 1 ? ((s.generatedTokens - 1) / s.decodeMs) * 1000 : 0;
    process.stderr.write(
      `prompt ${s.promptTokens} tokens, prefill ${s.prefillMs.toFixed(0)} ms (${((s.promptTokens / s.prefillMs) * 1000).toFixed(1)} tokens/s); ` +
        `generated ${s.generatedTokens} tokens, decode ${s.decodeMs.toFixed(0)} ms (${decodeTps.toFixed(1)} tokens/s); finish: ${s.finishReason}\n` +
        `weights ${engine.weightFormat}, ${engine.runtime.threads} threads\n` +
        formatKvReport(s.kv) + '\n',
    );
  } finally {
    await engine.close();
  }
}

export function formatKvReport(r: KvReport): string {
  const budget = Number.isFinite(r.budget) ? ` budget ${r.budget}` : '';
  const per = r.kvsPerHead;
  return [
    `KV method ${r.method}${budget}: ${fmtBytes(r.storedBytes)} stored vs ${fmtBytes(r.fullBytes)} for the full cache ` +
      `(compression ${r.compressionRatio.toFixed(2)}x); KVs per head min ${per.min} / mean ${per.mean.toFixed(1)} / max ${per.max}` +
      (r.summaryBytes ? `; page summaries ${fmtBytes(r.summaryBytes)}` : ''),
    `KV pool in use ${fmtBytes(r.poolInUseBytes)} (kept slots in whole blocks: ${fmtBytes(r.keptSlotsBlockBytes)}), peak ${fmtBytes(r.poolPeakBytes)} (decode phase ${fmtBytes(r.poolPeakDecodeBytes)}); read per decode step ${fmtBytes(r.readPerStep.total)} ` +
      `(K ${fmtBytes(r.readPerStep.k)}, V ${fmtBytes(r.readPerStep.v)}, summaries ${fmtBytes(r.readPerStep.summaries)}); evictions ${r.evictions}`,
  ].join('\n');
}

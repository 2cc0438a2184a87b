/**
 * Serving throughput under one KV memory limit (KV-Compress's experiment): N requests submitted at
 * once to the scheduler, for each method in turn on the same engine and pool; compression frees
 * blocks, so more sequences decode in each step. Prints the sequences reached, total decode
 * tokens/s and the ratio to the first method (full), rounds alternating the order of methods.
 *
 * `synthetic` fills each prompt's KV with random values instead of running the model (decode
 * speed and memory do not depend on the values; the eviction still scores and evicts), so
 * 6,000-token prompts take seconds: its figures are labelled synthetic. Without it, prompts are
 * real text run through the model (end to end, at smaller sizes on a CPU).
 */
import { Engine } from '../engine/engine.ts';
import type { WeightFormat } from '../model/weights.ts';
import type { CompressionRequest } from '../compress/registry.ts';
import { fmtBytes } from '../kv/pool.ts';
import { benchPrompt } from './model.ts';

export interface ServeBenchOptions {
  model: string;
  kvMemoryBytes: number;
  requests: number;
  promptTokens: number;
  newTokens: number;
  /** The first is the baseline of the ratios (full). */
  methods: CompressionRequest[];
  synthetic: boolean;
  rounds: number;
  threads?: number;
  weights?: WeightFormat;
  log: (line: string) => void;
}

export interface ServeMethodReport {
  label: string;
  /** Median over rounds of total decode tokens per second (synthetic fills excluded). */
  tokensPerSecond: number;
  ratioToFirst: number;
  /** Most sequences in one decode step, and the mean over steps that decoded. */
  maxDecodeBatch: number;
  meanDecodeBatch: number;
  preemptions: number;
  poolPeakBytes: number;
  /** The full cache's bytes over the bytes stored, at each request's end (mean). */
  compression: number;
  rounds: { seconds: number; fillSeconds: number; tokens: number; tokensPerSecond: number }[];
}

export interface ServeBenchReport {
  model: string;
  synthetic: boolean;
  kvMemoryBytes: number;
  requests: number;
  promptTokens: number;
  newTokens: number;
  threads: number;
  kernels: string;
  methods: ServeMethodReport[];
}

export function methodLabel(r: CompressionRequest): string {
  return r.method === 'full' ? 'full' : `${r.method}@${r.budget}`;
}

export async function benchServe(o: ServeBenchOptions): Promise<ServeBenchReport> {
  const engine = await Engine.load(o.model, { threads: o.threads, weights: o.weights, kvMemoryBytes: o.kvMemoryBytes });
  try {
    const pool = engine.pool;
    const c = engine.config;
    const prompt = o.synthetic ? new Array<number>(o.promptTokens).fill(1) : benchPrompt(engine.tokenizer, o.promptTokens);
    o.log(
      `${o.synthetic ? 'SYNTHETIC caches (random K/V, no prefill)' : 'end to end (real prefill)'}: ${o.requests} requests of ${prompt.length} prompt tokens + ${o.newTokens} new, ` +
        `KV limit ${fmtBytes(pool.capacityBlocks * pool.blockBytes)} (${pool.capacityBlocks} blocks of ${fmtBytes(pool.blockBytes)}), ` +
        `${c.numLayers} layers x ${c.numKvHeads} KV heads, ${engine.weightFormat} weights, ${engine.runtime.threads} threads, ${engine.runtime.kernelBuild} kernels`,
    );
    const fullBlocks = c.numLayers * c.numKvHeads * Math.ceil((prompt.length + o.newTokens) / pool.blockSlots);
    o.log(`a full cache of one request: ${fullBlocks} blocks (${fmtBytes(fullBlocks * pool.blockBytes)}): ${Math.floor(pool.capacityBlocks / fullBlocks)} fit at once`);
    const reports: ServeMethodReport[] = o.methods.map((m) => ({
      label: methodLabel(m), tokensPerSecond: 0, ratioToFirst: 0, maxDecodeBatch: 0, meanDecodeBatch: 0, preemptions: 0, poolPeakBytes: 0, compression: 0, rounds: [],
    }));
    for (let round = 0; round < o.rounds; round++) {
      const order = o.methods.map((_, i) => i);
      if (round % 2 === 1) order.reverse();
      for (const i of order) {
        const kv = o.methods[i]!;
        const st = engine.scheduler.stats;
        const before = { ...st };
        st.maxDecodeBatch = 0; // this run's largest decode batch
        pool.resetPeak();
        const t0 = performance.now();
        const gens = Array.from({ length: o.requests }, () =>
          engine.submit({ tokens: prompt }, { maxTokens: o.newTokens, ignoreEos: true, kv, syntheticPrompt: o.synthetic }));
        for (const g of gens) for await (const _ of g) { /* drain */ }
        const seconds = (performance.now() - t0) / 1000;
        let tokens = 0;
        let fill = 0;
        let compression = 0;
        for (const g of gens) {
          tokens += g.tokens.length;
          fill += (g.stats?.prefillMs ?? 0) / 1000;
          compression += g.stats!.kv.compressionRatio;
        }
        // Synthetic fills run on the scheduler's thread between steps: their time is not decoding.
        const decodeSeconds = o.synthetic ? Math.max(1e-9, seconds - fill) : seconds;
        const r = reports[i]!;
        const maxBatch = st.maxDecodeBatch;
        r.rounds.push({ seconds, fillSeconds: o.synthetic ? fill : 0, tokens, tokensPerSecond: tokens / decodeSeconds });
        r.maxDecodeBatch = Math.max(r.maxDecodeBatch, maxBatch);
        const steps = st.decodeSteps - before.decodeSteps;
        r.meanDecodeBatch = steps > 0 ? (st.decodeRows - before.decodeRows) / steps : 0;
        r.preemptions += st.preemptions - before.preemptions;
        r.poolPeakBytes = Math.max(r.poolPeakBytes, pool.peakBytes);
        r.compression = compression / gens.length;
        o.log(
          `round ${round + 1} ${r.label}: ${tokens} tokens in ${seconds.toFixed(1)} s${o.synthetic ? ` (synthetic fills ${fill.toFixed(1)} s)` : ''}: ` +
            `${(tokens / decodeSeconds).toFixed(1)} tokens/s; up to ${maxBatch} sequences per step (mean ${r.meanDecodeBatch.toFixed(1)}); ` +
            `${st.preemptions - before.preemptions} preemptions; pool peak ${fmtBytes(pool.peakBytes)}; compression ${r.compression.toFixed(1)}x`,
        );
      }
    }
    for (const r of reports) {
      const v = r.rounds.map((x) => x.tokensPerSecond).sort((a, b) => a - b);
      const mid = v.length >> 1;
      r.tokensPerSecond = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
    }
    for (const r of reports) r.ratioToFirst = r.tokensPerSecond / reports[0]!.tokensPerSecond;
    o.log('method | sequences per step (max / mean) | decode tokens/s (median) | over ' + reports[0]!.label + ' | compression | preemptions');
    for (const r of reports) {
      o.log(`${r.label} | ${r.maxDecodeBatch} / ${r.meanDecodeBatch.toFixed(1)} | ${r.tokensPerSecond.toFixed(1)} | ${r.ratioToFirst.toFixed(2)}x | ${r.compression.toFixed(1)}x | ${r.preemptions}`);
    }
    return {
      model: o.model, synthetic: o.synthetic, kvMemoryBytes: pool.capacityBlocks * pool.blockBytes, requests: o.requests,
      promptTokens: prompt.length, newTokens: o.newTokens, threads: engine.runtime.threads, kernels: engine.runtime.kernelBuild, methods: reports,
    };
  } finally {
    await engine.close();
  }
}

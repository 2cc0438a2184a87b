import { Runtime } from '../runtime/wasm.ts';
import { loadWeights, type WeightFormat } from '../model/weights.ts';
import { q8Bytes } from '../runtime/kernels.ts';
import { LlamaModel } from '../model/llama.ts';
import type { ModelConfig } from '../model/config.ts';
import { BlockPool, blockBytesFor, fmtBytes } from '../kv/pool.ts';
import { SequenceKV } from '../kv/store.ts';
import { feedRandomWindow, fillRandomKV } from './synthetic.ts';
import { shapeConfig, syntheticTensors } from './shapes.ts';
import { openModelSource } from '../model/source.ts';
import { measureBandwidth } from './bandwidth.ts';
import { createCompression, resolveCompression, type CompressionRequest } from '../compress/registry.ts';
import { CompressionSession } from '../compress/session.ts';

export interface DecodeBenchOptions {
  shape: string;
  /** Real weights from this GGUF file or model directory instead of random ones of `shape`. */
  model?: string;
  contextTokens: number;
  steps: number;
  weights: WeightFormat;
  threads?: number;
  /** KV methods to time on the same cache, each a `{ method, budget, ...options }` request (default: full). */
  methods?: CompressionRequest[];
  /** Also time one decode step of this many sequences (full caches of contextTokens) against one alone. */
  batch?: number;
  /**
   * Time every method's steps alternately with the steps of a full-KV cache of this many tokens
   * (same model and runtime), and report each method's step over that reference step.
   */
  referenceContext?: number;
  log: (line: string) => void;
}

export interface MethodDecodeReport {
  method: string;
  budget: number;
  msPerToken: number;
  tokensPerSecond: number;
  /** Measured on the store: bytes attention and selection read per step, and bytes stored. */
  kvReadBytesPerStep: number;
  kvStoredBytes: number;
  /** With referenceContext: the full-KV reference's step (median of the steps alternating with this method's) and this method's step over it. */
  reference?: { contextTokens: number; msPerToken: number; ratio: number };
}

export interface DecodeBenchReport {
  tokensPerSecond: number;
  msPerToken: number;
  bytesPerStep: number;
  weightBytesPerStep: number;
  kvBytesPerStep: number;
  bandwidthBytesPerSecond: number;
  rooflineTokensPerSecond: number;
  fractionOfRoofline: number;
  methods: MethodDecodeReport[];
  /** One step of `batch` sequences over one sequence's step (median of alternate timings). */
  batch?: { sequences: number; msSingle: number; msBatch: number; ratio: number };
}

/**
 * Decode speed of a random-weight model with real shapes (or of a real model, `model`) over a KV cache of `contextTokens`,
 * beside the bandwidth roofline: bytes one step must read / memory bandwidth measured in this run.
 */
export async function benchDecode(o: DecodeBenchOptions): Promise<DecodeBenchReport> {
  const source = o.model === undefined ? null : await openModelSource(o.model);
  const cfg = source?.config ?? shapeConfig(o.shape);
  const rt = await Runtime.create({ threads: o.threads });
  try {
    o.log(`${source ? `model ${o.model}` : `shape ${o.shape}`}: ${cfg.numLayers} layers, hidden ${cfg.hiddenSize}, ${cfg.numHeads}/${cfg.numKvHeads} heads, vocab ${cfg.vocabSize}; ${o.weights} weights; ${rt.threads} threads`);
    const t0 = performance.now();
    const tensors = source ? await source.openTensors() : syntheticTensors(cfg);
    const weights = (() => {
      try {
        return loadWeights(rt, cfg, tensors, { format: o.weights });
      } finally {
        tensors.close();
      }
    })();
    o.log(`${source ? 'model' : 'random'} weights ready in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${fmtBytes(weights.bytes)}`);
    const seqBlocks = Math.ceil((o.contextTokens + 2 * o.steps + 16) / 16) * cfg.numLayers * cfg.numKvHeads;
    const refBlocks = o.referenceContext === undefined ? 0 : Math.ceil((o.referenceContext + 2 * (o.steps + 4) * (o.methods?.length ?? 1) + 16) / 16) * cfg.numLayers * cfg.numKvHeads;
    const pool = new BlockPool(rt, { headDim: cfg.headDim, maxBytes: (Math.max(2, o.batch ?? 1) * seqBlocks + refBlocks) * blockBytesFor(cfg.headDim, 16) });
    const model = new LlamaModel(rt, cfg, weights, pool);
    const requests = o.methods ?? [{ method: 'full' }];
    const resolved = requests.map((r) => resolveCompression(r));
    const shape = { numLayers: cfg.numLayers, numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim };
    const perMethod: MethodDecodeReport[] = [];
    let msPerToken = 0;
    // The full-KV reference whose steps alternate with every method's (referenceContext).
    let refStep: (() => number) | undefined;
    let refSeq: SequenceKV | undefined;
    if (o.referenceContext !== undefined) {
      const seq = new SequenceKV(rt, pool, { layers: cfg.numLayers, kvHeads: cfg.numKvHeads, maxTokens: o.referenceContext + 2 * (o.steps + 4) * requests.length + 8 });
      refSeq = seq;
      fillRandomKV(rt, seq, cfg.numKvHeads * cfg.headDim, o.referenceContext, 11);
      let refToken = 1;
      refStep = () => {
        const t = performance.now();
        const logits = model.forward([{ seq, tokens: [refToken], decode: true }])[0]!;
        refToken = (refToken * 31 + (logits[0]! > 0 ? 7 : 3)) % cfg.vocabSize;
        return performance.now() - t;
      };
    }
    for (const kv of resolved) {
      const seq = new SequenceKV(rt, pool, { layers: cfg.numLayers, kvHeads: cfg.numKvHeads, maxTokens: o.contextTokens + o.steps + 8 });
      fillRandomKV(rt, seq, cfg.numKvHeads * cfg.headDim, o.contextTokens);
      const session = new CompressionSession(
        seq,
        createCompression(kv, { promptLength: o.contextTokens, maxNewTokens: 128, shape, maxPositionEmbeddings: cfg.maxPositionEmbeddings, blockSlots: pool.blockSlots }),
        shape,
        kv.budget,
      );
      // The cache stands for a prefilled prompt: random observation-window queries, then eviction.
      feedRandomWindow(session, cfg.numLayers, session.parts.eviction?.windowSize ?? 0, cfg.numHeads * cfg.headDim);
      const te = performance.now();
      session.afterPrefill(o.contextTokens);
      const evictMs = performance.now() - te;
      const warm = 2;
      let token = 1;
      for (let i = 0; i < warm; i++) { model.forward([{ seq, tokens: [token], hooks: session, decode: true }]); session.afterDecodeStep(); refStep?.(); }
      const readBefore = seq.reads.kBytes + seq.reads.vBytes + seq.reads.summaryBytes;
      const times: number[] = [];
      const refTimes: number[] = [];
      const step = (): void => {
        const t = performance.now();
        const logits = model.forward([{ seq, tokens: [token], hooks: session, decode: true }])[0]!;
        session.afterDecodeStep();
        times.push(performance.now() - t);
        token = (token * 31 + (logits[0]! > 0 ? 7 : 3)) % cfg.vocabSize;
      };
      for (let i = 0; i < o.steps; i++) {
        if (!refStep) step();
        else if (i % 2 === 0) { step(); refTimes.push(refStep()); } else { refTimes.push(refStep()); step(); }
      }
      const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
      const ms = med(times);
      const read = (seq.reads.kBytes + seq.reads.vBytes + seq.reads.summaryBytes - readBefore) / o.steps;
      const r: MethodDecodeReport = { method: kv.entry.name, budget: kv.budget, msPerToken: ms, tokensPerSecond: 1000 / ms, kvReadBytesPerStep: read, kvStoredBytes: seq.blockBytes() };
      if (refTimes.length) r.reference = { contextTokens: o.referenceContext!, msPerToken: med(refTimes), ratio: ms / med(refTimes) };
      perMethod.push(r);
      if (msPerToken === 0) msPerToken = ms;
      const label = `${kv.entry.name}${Number.isFinite(kv.budget) ? ` budget ${kv.budget}` : ''}`;
      o.log(
        `${label}: ${ms.toFixed(2)} ms/token (${(1000 / ms).toFixed(2)} tokens/s); ` +
          `KV read/step ${fmtBytes(read)}, stored ${fmtBytes(seq.blockBytes())}${evictMs > 1 ? `; eviction ${evictMs.toFixed(0)} ms` : ''}`,
      );
      if (r.reference) {
        o.log(`${label} at ${o.contextTokens} against full at ${r.reference.contextTokens} (steps alternating, medians): ${ms.toFixed(2)} vs ${r.reference.msPerToken.toFixed(2)} ms/token, step time ${r.reference.ratio.toFixed(3)}x`);
      }
      seq.release();
    }
    refSeq?.release();
    let batch: DecodeBenchReport['batch'];
    if (o.batch !== undefined && o.batch > 1) batch = timeBatch(rt, model, pool, cfg, o);
    const base = perMethod[0]!;
    for (const r of perMethod.slice(1)) {
      o.log(`${r.method} vs ${base.method}: step time ${(r.msPerToken / base.msPerToken).toFixed(3)}x, KV bytes read ${(r.kvReadBytesPerStep / Math.max(1, base.kvReadBytesPerStep)).toFixed(4)}x`);
    }

    // What one step must read: every weight matrix once (the embedding row lookup is negligible,
    // a tied output head reads the embedding matrix), plus the KV bytes the first method read.
    const embedBytes = weights.embed.kind === 'f32' ? weights.embed.N * weights.embed.K * 4 : q8Bytes(weights.embed.N, weights.embed.K);
    const weightBytesPerStep = weights.bytes - (cfg.tieWordEmbeddings ? 0 : embedBytes);
    const kvBytesPerStep = base.kvReadBytesPerStep;
    const bytesPerStep = weightBytesPerStep + kvBytesPerStep;
    const bw = measureBandwidth(rt, Math.max(256 * 1024 ** 2, Math.min(bytesPerStep, 1024 ** 3)));
    const roofline = bw / bytesPerStep;
    const tps = 1000 / msPerToken;
    const report: DecodeBenchReport = {
      tokensPerSecond: tps,
      msPerToken,
      bytesPerStep,
      weightBytesPerStep,
      kvBytesPerStep,
      bandwidthBytesPerSecond: bw,
      rooflineTokensPerSecond: roofline,
      fractionOfRoofline: tps / roofline,
      methods: perMethod,
      ...(batch ? { batch } : {}),
    };
    o.log(`context ${o.contextTokens} tokens, ${o.steps} timed steps (median); roofline for ${base.method}`);
    o.log(`decode        ${tps.toFixed(2)} tokens/s (${msPerToken.toFixed(1)} ms/token)`);
    o.log(`bytes/step    ${fmtBytes(bytesPerStep)} = weights ${fmtBytes(weightBytesPerStep)} + KV ${fmtBytes(kvBytesPerStep)}`);
    o.log(`bandwidth     ${(bw / 1e9).toFixed(1)} GB/s (parallel SIMD sum, same threads, this run)`);
    o.log(`roofline      ${roofline.toFixed(2)} tokens/s; measured = ${(report.fractionOfRoofline * 100).toFixed(1)}% of roofline`);
    model.dispose();
    pool.dispose();
    return report;
  } finally {
    await rt.close();
  }
}

/**
 * One decode step of `o.batch` sequences (full caches of o.contextTokens each) in one forward call
 * against the step of one of them alone, timed alternately; the weights are read once per step
 * either way, so the ratio shows what the extra rows cost.
 */
function timeBatch(rt: Runtime, model: LlamaModel, pool: BlockPool, cfg: ModelConfig, o: DecodeBenchOptions): NonNullable<DecodeBenchReport['batch']> {
  const n = o.batch!;
  const seqs = Array.from({ length: n }, (_, i) => {
    const seq = new SequenceKV(rt, pool, { layers: cfg.numLayers, kvHeads: cfg.numKvHeads, maxTokens: o.contextTokens + 2 * o.steps + 8 });
    fillRandomKV(rt, seq, cfg.numKvHeads * cfg.headDim, o.contextTokens, 3 + i);
    return seq;
  });
  try {
    const step = (k: number): number => {
      const t = performance.now();
      model.forward(seqs.slice(0, k).map((seq, i) => ({ seq, tokens: [1 + i], decode: true })));
      return performance.now() - t;
    };
    step(1); step(n);
    const single: number[] = [];
    const many: number[] = [];
    for (let i = 0; i < o.steps; i++) {
      if (i % 2 === 0) { single.push(step(1)); many.push(step(n)); } else { many.push(step(n)); single.push(step(1)); }
    }
    const med = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const r = { sequences: n, msSingle: med(single), msBatch: med(many), ratio: med(many) / med(single) };
    o.log(`batched decode: ${n} sequences in one step ${r.msBatch.toFixed(2)} ms vs one sequence ${r.msSingle.toFixed(2)} ms (median of ${o.steps} alternate steps each): ${r.ratio.toFixed(2)}x the step time for ${n}x the tokens`);
    return r;
  } finally {
    for (const s of seqs) s.release();
  }
}

/**
 * `bench model`: prefill and decode tokens/s of a real model, ours beside llama.cpp on the same
 * GGUF file, the same token ids and the same thread count.
 *
 * - Prompt: exactly `promptTokens` ids of the seeded essay (src/eval/ruler/essay.ts) in the
 *   model's own tokenizer (BOS as the tokenizer adds it); both sides get these ids.
 * - Prefill tokens/s = prompt tokens / time to the first generated token's logits. Decode tokens/s
 *   = (generated - 1) / time from the first generated token to the last: greedy, end-of-sequence
 *   ignored, so every round decodes the same count.
 * - Rounds alternate which side goes first (the host is shared and noisy); every run starts from
 *   an empty KV cache. Models stay loaded; only evaluation is timed, loading never is. One short
 *   untimed run per side warms up first. Figures are medians over rounds; ratios are ours / peer.
 * - Both sides prefill in batches of PREFILL_BATCH_TOKENS. The peer runs llama.cpp's defaults
 *   otherwise (f16 KV cache, its own flash-attention choice) on the file's quantized tensors; we
 *   dequantize GGUF while loading and compute on f32 or q8 weights with an f32 KV cache.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Engine, type Generation } from '../engine/engine.ts';
import type { Tokenizer } from '../model/tokenizer.ts';
import type { WeightFormat } from '../model/weights.ts';
import { openModelSource } from '../model/source.ts';
import { quantizationMix } from '../model/gguf-config.ts';
import { essaySentences } from '../eval/ruler/essay.ts';
import { resolveCompression, type CompressionRequest } from '../compress/registry.ts';
import { ContextLengthError, UsageError } from '../errors.ts';
import { LlamaCppPeer, type PeerInfo } from './peer.ts';

export const PREFILL_BATCH_TOKENS = 512;
const WARMUP_PROMPT_TOKENS = 16;

export interface ModelBenchOptions {
  /** A GGUF file or a Hugging Face model directory (already resolved). */
  model: string;
  promptTokens: number;
  genTokens: number;
  rounds: number;
  threads?: number;
  weights?: WeightFormat;
  peer: 'llama.cpp' | 'none';
  /** Our KV method (the peer always keeps the full cache). */
  kv?: CompressionRequest;
  /**
   * A second KV method of ours decoded beside the first from the same prefill (one prefill per
   * round feeds both; the peer keeps the full cache), e.g. rocketkv at budget 256 beside full.
   */
  beside?: CompressionRequest;
  log: (line: string) => void;
}

/** Options for several prompt lengths in one run: both sides load once. */
export interface ModelBenchLengthsOptions extends Omit<ModelBenchOptions, 'promptTokens'> {
  promptTokens: number[];
}

export interface SideFigures {
  prefillMs: number;
  decodeMs: number;
  promptTokens: number;
  decodeSteps: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
}

export interface ModelBenchRound {
  round: number;
  first: 'rocketkv' | 'llama.cpp';
  ours: SideFigures;
  peer?: SideFigures;
  /** The `beside` method's decode from the same prefill (its prefill figures are ours). */
  beside?: SideFigures;
  /** Leading greedy tokens the two sides agree on (node-llama-cpp gives ids). */
  agreeTokens?: number;
}

export interface ModelBenchReport {
  model: string;
  format: 'gguf' | 'hf';
  /** The file's tensor types, most weights first (GGUF), or the checkpoint's dtype. */
  fileWeights: string;
  cpu: { model: string; features: string[] };
  threads: number;
  promptTokens: number;
  genTokens: number;
  ours: { weights: WeightFormat; kernels?: string; kv: string; beside?: string; loadMs: number };
  peer: (PeerInfo & { loadMs: number; warning?: string }) | null;
  /** Why the peer did not run, when it did not. */
  peerSkipped?: string;
  rounds: ModelBenchRound[];
  median: {
    ours: { prefillTokensPerSecond: number; decodeTokensPerSecond: number };
    peer?: { prefillTokensPerSecond: number; decodeTokensPerSecond: number };
    /** ours / peer. */
    ratio?: { prefill: number; decode: number };
    /** The `beside` method: its decode tokens/s, and that over the peer's full-cache decode. */
    beside?: { decodeTokensPerSecond: number; ratioToPeer?: number };
  };
}

/** Exactly `tokens` ids of the seeded essay in this tokenizer (BOS as it adds one). */
export function benchPrompt(tokenizer: Tokenizer, tokens: number): number[] {
  for (let words = Math.ceil(tokens * 0.8) + 8; ; words *= 2) {
    const ids = tokenizer.encode(essaySentences(words).join(' '), { addSpecialTokens: true });
    if (ids.length >= tokens) return ids.slice(0, tokens);
  }
}

/** The CPU's model name and the SIMD extensions that matter for these kernels, from /proc/cpuinfo. */
export function cpuInfo(): { model: string; features: string[] } {
  const wanted = ['sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'avx_vnni', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni', 'avx512_bf16', 'amx_int8', 'neon', 'asimd'];
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const model = /^(?:model name|Hardware|CPU part)\s*:\s*(.+)$/m.exec(text)?.[1]?.trim() ?? 'unknown';
    const flags = new Set((/^(?:flags|Features)\s*:\s*(.+)$/m.exec(text)?.[1] ?? '').split(/\s+/));
    return { model, features: wanted.filter((f) => flags.has(f)) };
  } catch {
    return { model: 'unknown (no /proc/cpuinfo)', features: [] };
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function figures(prefillMs: number, decodeMs: number, promptTokens: number, decodeSteps: number): SideFigures {
  return {
    prefillMs, decodeMs, promptTokens, decodeSteps,
    prefillTokensPerSecond: (promptTokens / prefillMs) * 1000,
    decodeTokensPerSecond: (decodeSteps / decodeMs) * 1000,
  };
}

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : String(x));

export async function benchModel(o: ModelBenchOptions): Promise<ModelBenchReport> {
  return (await benchModelLengths({ ...o, promptTokens: [o.promptTokens] }))[0]!;
}

const describeKv = (kv: ReturnType<typeof resolveCompression>): string => kv.entry.name + (Number.isFinite(kv.budget) ? ` budget ${kv.budget}` : '');

/** benchModel at each prompt length in turn, both sides loaded once; one report per length. */
export async function benchModelLengths(o: ModelBenchLengthsOptions): Promise<ModelBenchReport[]> {
  if (o.genTokens < 2) throw new UsageError('--gen-tokens must be at least 2: decode speed is timed from the first generated token to the last');
  if (o.promptTokens.length === 0 || o.promptTokens.some((n) => !Number.isInteger(n) || n < 1) || o.rounds < 1) {
    throw new UsageError('--prompt-tokens (each length) and --rounds must be at least 1');
  }
  const kv = resolveCompression(o.kv ?? { method: 'full' });
  const beside = o.beside ? resolveCompression(o.beside) : undefined;
  const threads = o.threads ?? availableParallelism();
  const source = await openModelSource(o.model);
  const cfg = source.config;
  const longest = Math.max(...o.promptTokens);
  if (longest + o.genTokens >= cfg.maxPositionEmbeddings) {
    throw new ContextLengthError(`--prompt-tokens + --gen-tokens is ${longest + o.genTokens}, the model's context is ${cfg.maxPositionEmbeddings}; ask for fewer tokens`);
  }
  const fileWeights = source.gguf
    ? quantizationMix(source.gguf).map((m) => `${m.type} ${m.elements >= 1e5 ? `${(m.elements / 1e6).toFixed(1)}M` : `${(m.elements / 1e3).toFixed(1)}K`}`).join(', ')
    : `safetensors ${cfg.torchDtype}`;
  const cpu = cpuInfo();

  const t0 = performance.now();
  const engine = await Engine.load(o.model, { threads, weights: o.weights });
  const oursLoadMs = performance.now() - t0;
  let peer: LlamaCppPeer | null = null;
  try {
    o.log(`rocketkv   loaded ${o.model} in ${(oursLoadMs / 1000).toFixed(1)} s: ${engine.weightFormat} weights, ${engine.runtime.kernelBuild} kernels, ${engine.runtime.threads} threads, KV ${describeKv(kv)}${beside ? `, and ${describeKv(beside)} beside it from the same prefill` : ''}`);
    let peerSkipped: string | undefined;
    if (o.peer === 'none') peerSkipped = '--peer none';
    else if (source.kind !== 'gguf') peerSkipped = `${o.model} is not a GGUF file and llama.cpp runs GGUF only (write one with \`rocketkv export-gguf\`)`;
    if (peerSkipped) {
      o.log(`llama.cpp  skipped: ${peerSkipped}`);
    } else {
      peer = await LlamaCppPeer.start({ gguf: o.model, threads, contextTokens: longest + o.genTokens + 8, batchTokens: PREFILL_BATCH_TOKENS });
      if (peer.warning) o.log(`warning: ${peer.warning}`);
      o.log(`llama.cpp  loaded in ${(peer.loadMs / 1000).toFixed(1)} s: ${peer.info.binding} ${peer.info.version}, ${peer.info.build}, ${peer.info.threads} threads`);
    }
    const reports: ModelBenchReport[] = [];
    let warmed = false;
    for (const promptTokens of o.promptTokens) {
      reports.push(await benchLength({ ...o, promptTokens }, { engine, peer, peerSkipped, kv, beside, threads, cpu, fileWeights, sourceKind: source.kind, oursLoadMs, warm: !warmed }));
      warmed = true;
    }
    if (reports.length > 1) summarizeLengths(reports, o.log);
    return reports;
  } finally {
    await peer?.close();
    await engine.close();
  }
}

interface LengthContext {
  engine: Engine;
  peer: LlamaCppPeer | null;
  peerSkipped: string | undefined;
  kv: ReturnType<typeof resolveCompression>;
  beside: ReturnType<typeof resolveCompression> | undefined;
  threads: number;
  cpu: { model: string; features: string[] };
  fileWeights: string;
  sourceKind: 'gguf' | 'hf';
  oursLoadMs: number;
  warm: boolean;
}

/** The figures across lengths: each ratio, and the beside method's step time over our full step at the shortest length. */
function summarizeLengths(reports: ModelBenchReport[], log: (line: string) => void): void {
  log('');
  log('lengths    ratio = rocketkv / llama.cpp (medians); step = ms per decode step');
  const base = reports[0]!;
  const baseStep = 1000 / base.median.ours.decodeTokensPerSecond;
  for (const r of reports) {
    const m = r.median;
    const step = 1000 / m.ours.decodeTokensPerSecond;
    let line = `  ${String(r.promptTokens).padStart(6)} tokens: prefill ${f1(m.ours.prefillTokensPerSecond)} tok/s${m.ratio ? ` (${m.ratio.prefill.toFixed(2)}x)` : ''}; decode ${r.ours.kv} ${f1(m.ours.decodeTokensPerSecond)} tok/s${m.ratio ? ` (${m.ratio.decode.toFixed(2)}x)` : ''}, step ${step.toFixed(1)} ms`;
    if (m.beside && r.ours.beside) {
      const bStep = 1000 / m.beside.decodeTokensPerSecond;
      line += `; ${r.ours.beside} ${f1(m.beside.decodeTokensPerSecond)} tok/s${m.beside.ratioToPeer !== undefined ? ` (${m.beside.ratioToPeer.toFixed(2)}x llama.cpp full)` : ''}, step ${bStep.toFixed(1)} ms = ${(bStep / baseStep).toFixed(2)}x our ${base.ours.kv} step at ${base.promptTokens}`;
    }
    log(line);
  }
}

async function benchLength(o: ModelBenchOptions, c: LengthContext): Promise<ModelBenchReport> {
  const { engine, peer, peerSkipped, kv, beside, threads, cpu, fileWeights, oursLoadMs } = c;
  const { promptTokens } = o;
  const prompt = benchPrompt(engine.tokenizer, promptTokens);
  const genOpts = { temperature: 0, ignoreEos: true, prefillChunkTokens: PREFILL_BATCH_TOKENS };
  const runOurs = async (tokens: number[], genTokens: number): Promise<{ fig: SideFigures; generated: number[]; beside?: SideFigures }> => {
    if (!beside) {
      const gen = engine.generate({ tokens }, { ...genOpts, maxTokens: genTokens, kv: o.kv });
      for await (const _event of gen) { /* tokens are counted from the stats */ }
      const s = gen.stats!;
      return { fig: figures(s.prefillMs, s.decodeMs, s.promptTokens, s.generatedTokens - 1), generated: gen.tokens };
    }
    // One prefill (timed as ours), then each method decodes from it.
    const needs = engine.prefillNeeds(o.beside!, tokens.length, genTokens);
    const pre = await engine.prefill({ tokens }, { prefillChunkTokens: PREFILL_BATCH_TOKENS, window: needs.window, queryStatsSkip: needs.queryStatsSkip });
    try {
      const decodeFrom = async (req: CompressionRequest | undefined): Promise<{ stats: NonNullable<Generation['stats']>; tokens: number[] }> => {
        const gen = engine.generate({ tokens }, { ...genOpts, maxTokens: genTokens, kv: req, from: pre });
        for await (const _event of gen) { /* counted from the stats */ }
        return { stats: gen.stats!, tokens: gen.tokens };
      };
      const main = await decodeFrom(o.kv);
      const side = await decodeFrom(o.beside);
      return {
        fig: figures(pre.prefillMs, main.stats.decodeMs, tokens.length, main.stats.generatedTokens - 1),
        generated: main.tokens,
        beside: figures(side.stats.prefillMs, side.stats.decodeMs, tokens.length, side.stats.generatedTokens - 1),
      };
    } finally {
      pre.release();
    }
  };
  const notes = new Set<string>();
  const runPeer = async (p: LlamaCppPeer, tokens: number[], genTokens: number): Promise<{ fig: SideFigures; generated: number[] }> => {
    const r = await p.run(tokens, genTokens);
    if (r.note && !notes.has(r.note)) {
      notes.add(r.note);
      o.log(`llama.cpp  note: ${r.note}`);
    }
    return { fig: figures(r.prefillMs, r.decodeMs, r.promptTokens, r.decodeSteps), generated: r.generated };
  };

  if (c.warm) {
    const warm = prompt.slice(0, Math.min(WARMUP_PROMPT_TOKENS, prompt.length));
    await runOurs(warm, 2);
    if (peer) await runPeer(peer, warm, 2);
  }

  o.log('');
  o.log(`prompt     ${promptTokens} tokens of the seeded essay, then ${o.genTokens} greedy tokens (end-of-sequence ignored); prefill in batches of ${PREFILL_BATCH_TOKENS}; ${o.rounds} round${o.rounds === 1 ? '' : 's'}${o.rounds > 1 && peer ? ', order alternating' : ''}`);
  const rounds: ModelBenchRound[] = [];
  for (let r = 0; r < o.rounds; r++) {
    const oursFirst = r % 2 === 0;
    let ours: { fig: SideFigures; generated: number[]; beside?: SideFigures } | undefined;
    let theirs: { fig: SideFigures; generated: number[] } | undefined;
    if (oursFirst || !peer) ours = await runOurs(prompt, o.genTokens);
    if (peer) theirs = await runPeer(peer, prompt, o.genTokens);
    ours ??= await runOurs(prompt, o.genTokens);
    let agreeTokens: number | undefined;
    if (theirs && theirs.generated.length > 0) {
      agreeTokens = 0;
      while (agreeTokens < Math.min(ours.generated.length, theirs.generated.length) && ours.generated[agreeTokens] === theirs.generated[agreeTokens]) agreeTokens++;
    }
    const round: ModelBenchRound = { round: r + 1, first: oursFirst || !peer ? 'rocketkv' : 'llama.cpp', ours: ours.fig, peer: theirs?.fig, beside: ours.beside, agreeTokens };
    rounds.push(round);
    o.log('');
    o.log(`round ${round.round} (${round.first} first)`);
    o.log(`  ${'side'.padEnd(10)} ${'prefill ms'.padStart(11)} ${'prefill tok/s'.padStart(14)} ${'decode ms'.padStart(10)} ${'decode tok/s'.padStart(13)}`);
    const row = (name: string, f: SideFigures): string =>
      `  ${name.padEnd(10)} ${f1(f.prefillMs).padStart(11)} ${f1(f.prefillTokensPerSecond).padStart(14)} ${f1(f.decodeMs).padStart(10)} ${f1(f.decodeTokensPerSecond).padStart(13)}`;
    o.log(row('rocketkv', ours.fig));
    if (ours.beside && beside) o.log(`  ${'  beside'.padEnd(10)} ${'-'.padStart(11)} ${'-'.padStart(14)} ${f1(ours.beside.decodeMs).padStart(10)} ${f1(ours.beside.decodeTokensPerSecond).padStart(13)}  (${describeKv(beside)}, from the same prefill)`);
    if (theirs) o.log(row('llama.cpp', theirs.fig));
    if (agreeTokens !== undefined) o.log(`  greedy tokens agree: the first ${agreeTokens} of ${o.genTokens}`);
  }

  const med = (pick: (r: ModelBenchRound) => SideFigures | undefined) => {
    const figs = rounds.map(pick).filter((f): f is SideFigures => f !== undefined);
    return figs.length ? { prefillTokensPerSecond: median(figs.map((f) => f.prefillTokensPerSecond)), decodeTokensPerSecond: median(figs.map((f) => f.decodeTokensPerSecond)) } : undefined;
  };
  const oursMed = med((r) => r.ours)!;
  const peerMed = med((r) => r.peer);
  const ratio = peerMed ? { prefill: oursMed.prefillTokensPerSecond / peerMed.prefillTokensPerSecond, decode: oursMed.decodeTokensPerSecond / peerMed.decodeTokensPerSecond } : undefined;
  const besideMed = med((r) => r.beside);
  const besideSummary = besideMed ? { decodeTokensPerSecond: besideMed.decodeTokensPerSecond, ratioToPeer: peerMed ? besideMed.decodeTokensPerSecond / peerMed.decodeTokensPerSecond : undefined } : undefined;
  const report: ModelBenchReport = {
    model: o.model,
    format: c.sourceKind,
    fileWeights,
    cpu,
    threads,
    promptTokens,
    genTokens: o.genTokens,
    ours: { weights: engine.weightFormat, kernels: engine.runtime.kernelBuild, kv: describeKv(kv), beside: beside ? describeKv(beside) : undefined, loadMs: oursLoadMs },
    peer: peer ? { ...peer.info, loadMs: peer.loadMs, warning: peer.warning } : null,
    peerSkipped,
    rounds,
    median: { ours: oursMed, peer: peerMed, ratio, beside: besideSummary },
  };

  const side = (name: string, ourValue: number, peerValue: number | undefined, r: number | undefined): string =>
    peerValue === undefined || r === undefined
      ? `rocketkv ${f1(ourValue)} tok/s (no peer)`
      : `rocketkv ${f1(ourValue)} tok/s, ${name} ${f1(peerValue)} tok/s, ratio ${r.toFixed(2)}x`;
  o.log('');
  o.log(`summary    median of ${o.rounds} round${o.rounds === 1 ? '' : 's'}; evaluation only (models stay loaded, loading is not timed); ratio = rocketkv / llama.cpp`);
  o.log(`prefill    ${promptTokens} tokens: ${side('llama.cpp', oursMed.prefillTokensPerSecond, peerMed?.prefillTokensPerSecond, ratio?.prefill)}`);
  o.log(`decode     ${o.genTokens - 1} steps: ${side('llama.cpp', oursMed.decodeTokensPerSecond, peerMed?.decodeTokensPerSecond, ratio?.decode)}`);
  if (besideSummary && beside) o.log(`beside     ${describeKv(beside)} decodes ${f1(besideSummary.decodeTokensPerSecond)} tok/s from the same prefill${besideSummary.ratioToPeer !== undefined ? `, ${besideSummary.ratioToPeer.toFixed(2)}x llama.cpp's full-cache decode` : ''}`);
  o.log(`cpu        ${cpu.model}; ${cpu.features.join(' ') || 'no SIMD flags listed'} (/proc/cpuinfo)`);
  o.log(`threads    ${threads}${peer ? ' on both sides' : ''}`);
  o.log(
    `peer       ${peer ? `${peer.info.binding} ${peer.info.version}, ${peer.info.build}; its CPU features: ${peer.info.cpuFeatures}; KV ${peer.info.kvCache}` : `none (${peerSkipped})`}`,
  );
  o.log(
    `weights    rocketkv ${engine.weightFormat} in memory${c.sourceKind === 'gguf' ? ' (dequantized from the GGUF while loading)' : ''}; file ${fileWeights} weights${peer ? ', which llama.cpp computes on as stored' : ''}`,
  );
  o.log(`kv         rocketkv ${report.ours.kv}${beside ? ` and ${describeKv(beside)}` : ''} (f32)${peer ? '; llama.cpp full' : ''}`);
  return report;
}

/** Writes the report as JSON. */
export function writeModelBenchJson(path: string, report: ModelBenchReport | ModelBenchReport[]): void {
  writeFileSync(path, JSON.stringify(report, null, 2) + '\n');
}

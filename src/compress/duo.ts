/**
 * duo: DuoAttention-style heads (arXiv 2410.10819; kvpress's DuoAttentionPress). Retrieval heads
 * keep every KV; streaming heads keep the first `sink_size` and the last `recent_size` prompt
 * positions. Which heads stream comes from a head pattern found on the model by a scoring pass
 * (`rocketkv duo-heads`, stored beside the model; scoreDuoPattern below) and read at request time.
 *
 * Scoring pass (kvpress's `duo_attention_on_the_fly`, per text, per layer):
 *   mq = mean over the text's positions of the pre-RoPE queries (per query head), mk likewise keys
 *   Q_p = RoPE(mq, p), K_p = RoPE(mk, p) for p = 0..q_len-1 (q_len 500)
 *   a   = softmax_j(Q_{q_len-1} . K_j / sqrt(d))            the last query over all q_len keys
 *   s   = mean_j cumsum(a)_j                                 area under the cumulated attention
 *   score(KV head) = mean of s over its G query heads, averaged over the texts
 * Low scores stream (kvpress sorts ascending and streams the first round(N * ratio) heads).
 * Texts: kvpress samples 50 BookSum chapters (a dataset download); here `texts` slices of the
 * project's own essay haystack (src/eval/ruler/essay.ts), recorded in the pattern file.
 *
 * Budget B (--kv-budget) = the average KVs kept per KV head, as kvcompress and adakv count it.
 * kvpress takes head_compression_ratio instead (and sink 128, recent 256 with on-the-fly scores);
 * here the ratio is the one that meets the budget: with S = sink + recent and L prompt tokens,
 * r = (L - B) / (L - S) of the N heads stream (round(N r) of them, lowest scores first). Below
 * B = S every head streams with sink and recent scaled down to B in the same 1:2 proportion.
 * Memory is really freed (kvpress masks the streaming heads' keys instead). Applied once at the
 * end of prefill; decode tokens are appended to every head.
 */
import { readFileSync } from 'node:fs';
import type { MethodContext, MethodEntry, OptionValues } from './method.ts';
import type { EvictionMethod, LayerView, PlanContext } from './press.ts';
import { UsageError } from '../errors.ts';

export const DUO_FORMAT = 'rocketkv-duo-heads/1';

/** A head pattern: one score per [layer][KV head], and how it was made. */
export interface DuoPattern {
  format: typeof DUO_FORMAT;
  /** modelFingerprint() of the checkpoint it was scored on. */
  model_fingerprint: string;
  q_len: number;
  texts: number;
  text_tokens: number;
  source: string;
  scores: number[][];
}

/** Where a model's head pattern lives: beside a GGUF file, or inside a model directory. */
export function duoPatternPath(modelPath: string, isFile: boolean): string {
  return isFile ? `${modelPath}.duo-heads.json` : `${modelPath.replace(/\/+$/, '')}/duo-heads.json`;
}

export function readDuoPattern(path: string, shape: { numLayers: number; numKvHeads: number }, fingerprint?: string): DuoPattern {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch {
    throw new UsageError(`duo needs the model's head pattern at ${path}; make it once with \`rocketkv duo-heads --model <model>\``);
  }
  let p: DuoPattern;
  try { p = JSON.parse(raw) as DuoPattern; } catch (e) { throw new UsageError(`${path} is not JSON (${(e as Error).message}); remake it with \`rocketkv duo-heads\``); }
  if (p.format !== DUO_FORMAT || !Array.isArray(p.scores)) throw new UsageError(`${path} is not a ${DUO_FORMAT} head pattern; remake it with \`rocketkv duo-heads\``);
  if (p.scores.length !== shape.numLayers || p.scores.some((row) => !Array.isArray(row) || row.length !== shape.numKvHeads || row.some((v) => typeof v !== 'number' || !Number.isFinite(v)))) {
    throw new UsageError(`${path} holds scores for another shape than ${shape.numLayers} layers x ${shape.numKvHeads} KV heads; remake it with \`rocketkv duo-heads\``);
  }
  if (fingerprint !== undefined && p.model_fingerprint !== fingerprint) {
    throw new UsageError(`${path} was scored on another checkpoint (fingerprint ${p.model_fingerprint}, this model ${fingerprint}); remake it with \`rocketkv duo-heads\``);
  }
  return p;
}

/** The KV heads (flat index layer * H_kv + h) that stream: the `n` lowest scores, ties to the lower index. */
export function streamingHeads(scores: number[][], n: number): Set<number> {
  const flat = scores.flat();
  const order = flat.map((_, i) => i).sort((a, b) => flat[a]! - flat[b]! || a - b);
  return new Set(order.slice(0, Math.max(0, n)));
}

export interface DuoOptions {
  sinkSize: number;
  recentSize: number;
}

export class Duo implements EvictionMethod {
  readonly name = 'duo';
  readonly windowSize = 0;
  readonly expandGqa = false;
  readonly minLengthToEvict: number;
  private budget: number;
  private opts: DuoOptions;
  private pattern: DuoPattern;

  constructor(budget: number, pattern: DuoPattern, opts: DuoOptions) {
    this.budget = budget;
    this.pattern = pattern;
    this.opts = opts;
    this.minLengthToEvict = budget;
  }

  /** The budget is the average kept per KV head. */
  keptPerHead(): number {
    return this.budget;
  }

  score(view: LayerView): Float32Array[] {
    // The rule is per head, not per slot: positions carry it to plan.
    return Array.from({ length: view.heads }, () => new Float32Array(0));
  }

  plan(_scores: Float32Array[][], ctx: PlanContext): Int32Array[][] {
    const N = ctx.lengths.reduce((a, row) => a + row.length, 0);
    const L = Math.max(...ctx.lengths.flat());
    const B = this.budget;
    let sink = this.opts.sinkSize;
    let recent = this.opts.recentSize;
    const S = sink + recent;
    let nStream: number;
    if (B >= L) nStream = 0;
    else if (B >= S) nStream = Math.round((N * (L - B)) / (L - S));
    else {
      nStream = N;
      sink = Math.round((B * sink) / S);
      recent = B - sink;
    }
    const stream = streamingHeads(this.pattern.scores, nStream);
    return ctx.lengths.map((row, l) => row.map((n, h) => {
      const pos = ctx.positions[l]![h]!;
      if (!stream.has(l * row.length + h)) return Int32Array.from({ length: n }, (_, j) => j);
      const from = ctx.tokensSeen - recent;
      const keep: number[] = [];
      for (let j = 0; j < n; j++) if (pos[j]! < sink || pos[j]! >= from) keep.push(j);
      return Int32Array.from(keep);
    }));
  }
}

export const duoEntry: MethodEntry = {
  name: 'duo',
  summary: 'DuoAttention-style heads: retrieval heads keep all, streaming heads sinks + recent; the head pattern scored on the model (rocketkv duo-heads)',
  options: {
    sink_size: { type: 'int', default: 128, min: 0, help: 'first positions a streaming head keeps (kvpress on-the-fly: 128)' },
    recent_size: { type: 'int', default: 256, min: 0, help: 'last positions a streaming head keeps (kvpress on-the-fly: 256)' },
    pattern: { type: 'string', default: '', file: true, help: "head pattern file (default: beside the model, written by `rocketkv duo-heads`)" },
  },
  create(ctx: MethodContext, opts: OptionValues) {
    const sinkSize = opts.sink_size as number;
    const recentSize = opts.recent_size as number;
    if (sinkSize + recentSize === 0) throw new UsageError('duo: sink_size + recent_size must be at least 1');
    // Validation without a model (the registry's stand-in): the pattern is read when a request is made.
    if (ctx.validateOnly) return {};
    const path = (opts.pattern as string) || (ctx.modelPath ? duoPatternPath(ctx.modelPath.path, ctx.modelPath.isFile) : '');
    if (!path) throw new UsageError('duo needs a head pattern: give pattern=<file> or run it through an engine that knows its model path');
    const pattern = readDuoPattern(path, ctx.shape, ctx.modelPath?.fingerprint);
    return { eviction: new Duo(ctx.budget, pattern, { sinkSize, recentSize }) };
  },
};

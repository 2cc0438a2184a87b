import { statSync } from 'node:fs';
import { Runtime, type KernelBuildChoice } from '../runtime/wasm.ts';
import type { ModelConfig } from '../model/config.ts';
import { openModelSource } from '../model/source.ts';
import type { Tokenizer } from '../model/tokenizer.ts';
import { loadWeights, defaultWeightFormat, type WeightFormat } from '../model/weights.ts';
import { LlamaModel } from '../model/llama.ts';
import { BlockPool, fmtBytes } from '../kv/pool.ts';
import { SequenceKV } from '../kv/store.ts';
import { validateSampling, type SamplingOptions } from './sampling.ts';
import { checkFitsWasm } from './memory.ts';
import { ContextLengthError, UsageError, WasmMemoryError } from '../errors.ts';
import { createCompression, resolveCompression, type CompressionRequest, type ResolvedCompression } from '../compress/registry.ts';
import { CompressionSession, QueryWindow } from '../compress/session.ts';
import { QueryStats } from '../compress/query-stats.ts';
import { ropeInvFreq } from '../model/config.ts';
import { modelFingerprint } from '../model/fingerprint.ts';
import type { KvReport } from './report.ts';
import { Scheduler } from './scheduler.ts';
import { Sequence, type SequenceHost } from './sequence.ts';
import { TokenStream } from './stream.ts';
import { forecastBlocks, type BlockForecast } from '../compress/forecast.ts';
import { feedRandomWindow, fillRandomKV } from '../bench/synthetic.ts';

export interface LoadProgress { stage: 'weights'; done: number; total: number }

export interface EngineOptions {
  /** Threads for the kernels, the calling one included (default: the machine's cores). */
  threads?: number;
  /** Build of the kernels: auto (relaxed SIMD where the engine compiles it), plain or relaxed (default: ROCKETKV_KERNELS, else auto). */
  kernels?: KernelBuildChoice;
  /** In-memory weight format (default q8 for models over 300M parameters, else f32). */
  weights?: WeightFormat;
  /** Most tokens one sequence may hold (default: the model's context length). */
  maxContextTokens?: number;
  /**
   * The KV pool's byte limit, fixed at load (default: KV_MEMORY_SHARE of what wasm32's 4 GiB leaves
   * after the weights and ACTIVATION_RESERVE_BYTES for activations).
   */
  kvMemoryBytes?: number;
  onProgress?: (p: LoadProgress) => void;
}

export interface ChatMessage { role: string; content: string }
export type PromptInput = string | { tokens: number[] } | { messages: ChatMessage[] };

export interface GenerateOptions extends SamplingOptions {
  /** Tokens to generate at most (default 128). */
  maxTokens?: number;
  /** Generation ends before the first occurrence of any of these strings. */
  stop?: string[];
  /** Keep generating past end-of-sequence tokens. */
  ignoreEos?: boolean;
  /** Prompt tokens per prefill forward call (default 512). */
  prefillChunkTokens?: number;
  onPrefillProgress?: (done: number, total: number) => void;
  /** KV compression for this request: `{ method, budget, ...options }` (default: full). */
  kv?: CompressionRequest;
  /**
   * New tokens that budget-splitting methods (rocketkv) size themselves for, when it should not be
   * maxTokens (RocketKV's RULER runs size every task for 128 whatever its answer length).
   */
  kvPlanMaxNewTokens?: number;
  /**
   * Conversations: append this turn's prompt without running the eviction stage on it (e.g. a
   * question after a context that was compressed query-agnostically). Decode-time selection still runs.
   */
  skipEviction?: boolean;
  /**
   * Start from this prompt prefilled once with `engine.prefill` instead of running the prompt
   * (the input must be the same tokens). The result is the same as a run of its own: the prefill
   * does not depend on the method, which evicts only after it. Evaluation grids run every method
   * of a sample from one prefill this way.
   */
  from?: PrefilledPrompt;
  /** Cancels the request: its blocks are freed before the next step and iteration throws the reason. */
  signal?: AbortSignal;
  /**
   * 'auto' (default): a prompt whose method evicts each layer on its own (rocketkv, snapkv, ...) is
   * prefilled layer by layer when it runs alone (nothing else admitted or waiting), each layer
   * evicted as soon as it is done, so the prompt's whole uncompressed KV never exists; otherwise in
   * chunks, so that other requests keep decoding. 'chunk' always chunks. The results are the same
   * either way, bit for bit; only the peak memory differs.
   */
  prefillOrder?: 'auto' | 'chunk';
  /**
   * Benchmarks only: the prompt's KV is filled with random values (and the observation window with
   * random queries) instead of running the model, so serving runs at long prompts take seconds.
   * Decode speed and memory are those of a real run; the tokens are meaningless.
   */
  syntheticPrompt?: boolean;
}

/**
 * A prompt run once through the model with the full cache: its KV sequence, its last query rows
 * of every layer (the observation window, `window` rows) and the logits of its last token.
 * Release it when done; requests started from it hold copies of their own.
 */
export interface PrefilledPrompt {
  readonly tokens: readonly number[];
  readonly seq: SequenceKV;
  readonly window: QueryWindow;
  /** Pre-RoPE query moments, when `prefill` was asked to keep them (expected_attention needs them). */
  readonly stats: QueryStats | null;
  readonly logits: Float32Array;
  readonly prefillMs: number;
  release(): void;
}

export interface PrefillOptions {
  /** Query rows kept per layer (default PREFILL_WINDOW): at least every method's observation window. */
  window?: number;
  /** Keep pre-RoPE query moments from this row on (expected_attention: its n_sink); default none. */
  queryStatsSkip?: number | null;
  prefillChunkTokens?: number;
  onPrefillProgress?: (done: number, total: number) => void;
}

/** Query rows `engine.prefill` keeps by default: the largest observation window of the methods (rocketkv-mt's 128). */
export const PREFILL_WINDOW = 128;

export interface GenerateEvent { token: number; text: string }

export type FinishReason = 'eos' | 'stop' | 'length' | 'cancelled';

export interface GenerateStats {
  promptTokens: number;
  generatedTokens: number;
  prefillMs: number;
  decodeMs: number;
  /** Bytes of KV blocks the sequence held at the end. */
  kvBytes: number;
  /** The pool's peak bytes during this generation (prefill and decode). */
  kvPeakBytes: number;
  /** The pool's peak bytes during the decode phase alone (after prefill and its eviction). */
  kvPeakDecodeBytes: number;
  finishReason: FinishReason;
  /** What the KV cache held and what decode read, measured on the store. */
  kv: KvReport;
  /** Times the scheduler preempted the request (its work was recomputed, with the same result). */
  preemptions?: number;
  /** How the prompt ran: in chunks through all layers, or layer by layer (evicting each when done). */
  prefillOrder?: 'chunk' | 'layer';
  /** The end-of-sequence token that ended the reply (finishReason 'eos'); a conversation's cache holds it after the reply's tokens. */
  eosToken?: number;
}

/** How a conversation's turn links to its conversation (engine.request). */
interface ConversationLink {
  kv: ResolvedCompression;
  plan?: { promptTokens: number; maxNewTokens: number };
  /** The cache as the previous turn left it (null before the first turn). */
  state(): { store: SequenceKV; session: CompressionSession } | null;
  /** Runs `go` once the previous turn has ended (with an error if the conversation cannot go on). */
  after(go: (err?: Error) => void): void;
  /** The turn joins the scheduler. */
  started(seq: Sequence): void;
  ended(seq: Sequence, err: Error | null): void;
}

/** One conversation: turns share one KV sequence and one compression method. */
export interface Conversation {
  send(input: PromptInput, opts?: GenerateOptions): Generation;
  /** Return the conversation's KV blocks to the pool. */
  close(): void;
}

/** One request's stream of tokens; `stats` and `text` are filled once iteration ends. */
export interface Generation extends AsyncIterable<GenerateEvent> {
  stats: GenerateStats | null;
  text: string;
  tokens: number[];
}

/** A loaded model with its tokenizer, kernels and KV pool: the library's entry point. */
export class Engine {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly tokenizer: Tokenizer;
  readonly runtime: Runtime;
  readonly pool: BlockPool;
  readonly model: LlamaModel;
  readonly weightFormat: WeightFormat;
  readonly maxContextTokens: number;
  /** modelFingerprint() of the checkpoint (files kept beside a model name it). */
  readonly fingerprint: string;
  /** Continuous batching of every request of this engine (generate and submit). */
  readonly scheduler: Scheduler;

  private constructor(dir: string, cfg: ModelConfig, tok: Tokenizer, rt: Runtime, pool: BlockPool, model: LlamaModel, fmt: WeightFormat, maxCtx: number, fingerprint: string) {
    this.fingerprint = fingerprint;
    this.dir = dir;
    this.config = cfg;
    this.tokenizer = tok;
    this.runtime = rt;
    this.pool = pool;
    this.model = model;
    this.weightFormat = fmt;
    this.maxContextTokens = maxCtx;
    this.scheduler = new Scheduler(model, pool);
  }

  /** Loads a GGUF file or a Hugging Face model directory. */
  static async load(dir: string, opts: EngineOptions = {}): Promise<Engine> {
    const source = await openModelSource(dir);
    const cfg = source.config;
    const fmt = opts.weights ?? defaultWeightFormat(cfg);
    if (fmt !== 'f32' && fmt !== 'q8') throw new UsageError(`weights must be f32 or q8, got ${String(fmt)}`);
    // Sliding-window attention is not implemented: within the window it equals full attention, so
    // sequences are limited to the window rather than computed differently from the model.
    const modelCtx = cfg.slidingWindow ? Math.min(cfg.maxPositionEmbeddings, cfg.slidingWindow) : cfg.maxPositionEmbeddings;
    const maxCtx = opts.maxContextTokens ?? modelCtx;
    if (!Number.isInteger(maxCtx) || maxCtx <= 0) throw new UsageError(`max context must be a positive integer, got ${maxCtx}`);
    checkFitsWasm(cfg, fmt, dir);
    const fingerprint = await modelFingerprint(dir);
    const tokenizer = await source.loadTokenizer();
    const src = await source.openTensors();
    let rt: Runtime | null = null;
    try {
      rt = await Runtime.create({ threads: opts.threads, kernels: opts.kernels });
      const weights = loadWeights(rt, cfg, src, {
        format: fmt,
        onProgress: (done, total) => opts.onProgress?.({ stage: 'weights', done, total }),
      });
      const pool = new BlockPool(rt, { headDim: cfg.headDim, blockSlots: 16, maxBytes: kvMemoryLimit(rt, opts.kvMemoryBytes) });
      const model = new LlamaModel(rt, cfg, weights, pool);
      return new Engine(dir, cfg, tokenizer, rt, pool, model, fmt, maxCtx, fingerprint);
    } catch (e) {
      await rt?.close();
      throw e;
    } finally {
      src.close();
    }
  }

  /** A new, empty KV sequence in this engine's pool. */
  newSequence(): SequenceKV {
    const c = this.config;
    return new SequenceKV(this.runtime, this.pool, { layers: c.numLayers, kvHeads: c.numKvHeads, maxTokens: this.maxContextTokens });
  }

  /** Prompt text or messages to token ids (BOS per the tokenizer's own settings). */
  encodePrompt(input: PromptInput): number[] {
    if (typeof input === 'string') return this.tokenizer.encode(input, { addSpecialTokens: true });
    if ('tokens' in input) return input.tokens.slice();
    const text = this.tokenizer.applyChatTemplate(input.messages, { addGenerationPrompt: true });
    return this.tokenizer.encode(text, { addSpecialTokens: false });
  }

  /**
   * Run a prompt once with the full cache, for many requests to start from (`GenerateOptions.from`).
   * `window`: query rows kept per layer, at least the observation window of every method that will use it.
   */
  async prefill(input: PromptInput, opts: PrefillOptions = {}): Promise<PrefilledPrompt> {
    const { prompt, chunk } = this.prepareTurn(input, { prefillChunkTokens: opts.prefillChunkTokens }, 0);
    const window = opts.window ?? PREFILL_WINDOW;
    if (!Number.isInteger(window) || window < 0) throw new UsageError(`window must be an integer >= 0, got ${window}`);
    const c = this.config;
    const rec = new QueryWindow(window, c.numHeads * c.headDim);
    const skip = opts.queryStatsSkip;
    if (skip !== undefined && skip !== null && (!Number.isInteger(skip) || skip < 0)) throw new UsageError(`queryStatsSkip must be an integer >= 0, got ${skip}`);
    const stats = skip === undefined || skip === null ? null : new QueryStats(skip, c.numHeads, c.headDim);
    const hooks = {
      onQueries: (l: number, q: Float32Array, T: number) => rec.onQueries(l, q, T),
      ...(stats ? { onPreRopeQueries: (l: number, q: Float32Array, T: number) => stats.onPreRopeQueries(l, q, T) } : {}),
    };
    const seq = this.newSequence();
    const t0 = performance.now();
    let logits: Float32Array = new Float32Array(0);
    try {
      for (let i = 0; i < prompt.length; i += chunk) {
        const part = prompt.slice(i, Math.min(prompt.length, i + chunk));
        logits = this.model.forward([{ seq, tokens: part, hooks }])[0]!.slice();
        opts.onPrefillProgress?.(Math.min(prompt.length, i + chunk), prompt.length);
        if (prompt.length > chunk) await yieldToEventLoop();
      }
    } catch (e) {
      seq.release();
      throw e;
    }
    const prefillMs = performance.now() - t0;
    return { tokens: prompt, seq, window: rec, stats, logits, prefillMs, release: () => { seq.release(); this.scheduler.poke(); } };
  }

  /**
   * Stream one request's tokens. Validates everything before any work starts; the request joins the
   * scheduler at the first read, so it is batched with every other request running then.
   */
  generate(input: PromptInput, opts: GenerateOptions = {}): Generation {
    return this.request(input, opts);
  }

  /**
   * Queue a request now (continuous batching with every other request): validated, and refused
   * if it could never fit the KV memory limit, before any work. Read its tokens from the result;
   * `opts.signal` or leaving the loop early cancels it and frees its blocks.
   */
  submit(input: PromptInput, opts: GenerateOptions = {}): Generation {
    const stream = this.request(input, opts);
    stream.start();
    return stream;
  }

  private request(input: PromptInput, opts: GenerateOptions, conv?: ConversationLink): TokenStream {
    const kv = conv?.kv ?? resolveCompression(opts.kv ?? { method: 'full' });
    const turn = this.prepareTurn(input, opts, conv?.state()?.store.nextPosition ?? 0);
    const from = opts.from;
    if (from && (from.tokens.length !== turn.prompt.length || from.tokens.some((t, i) => t !== turn.prompt[i]))) {
      throw new UsageError('the prompt differs from the prefilled one given in `from`; give the same tokens');
    }
    if (from?.seq.isReleased) throw new UsageError('cannot fork a released sequence (the prefilled prompt was released before a request started from it)');
    const P = turn.prompt.length;
    const planP = conv?.plan?.promptTokens ?? P;
    const planN = conv?.plan?.maxNewTokens ?? opts.kvPlanMaxNewTokens ?? turn.maxTokens;
    const c = this.config;
    const shape = this.forecastShape();
    // A conversation's later turn appends to its cache: what it holds plus the new tokens, uncompressed.
    const forecastNow = (): BlockForecast => {
      const carried = conv?.state();
      if (!carried) return forecastBlocks(this.compressionFor(kv, planP, planN), kv.budget, P, turn.maxTokens, shape);
      const held = carried.store.blocksHeld;
      const prefillPeak = held + carried.store.blocksToAppend(P);
      const final = held + carried.store.blocksToAppend(P + turn.maxTokens);
      return { prefillPeak, compressed: prefillPeak, final, peak: Math.max(prefillPeak, final) };
    };
    const host: SequenceHost = {
      tokenizer: this.tokenizer,
      blockBytes: this.pool.blockBytes,
      newStore: () => this.newSequence(),
      newSession: (store) => new CompressionSession(store, this.compressionFor(kv, planP, planN), this.shape(), kv.budget),
      fillSynthetic: (store, session, n) => {
        fillRandomKV(this.runtime, store, c.numKvHeads * c.headDim, n);
        feedRandomWindow(session, c.numLayers, session.parts.eviction?.windowSize ?? 0, c.numHeads * c.headDim);
      },
      vocabSize: c.vocabSize,
    };
    const signal = opts.signal;
    const cancel = (): void => { seq.cancel(); this.scheduler.poke(); };
    const stream = new TokenStream(
      () => {
        if (signal?.aborted) { seq.cancel(); stream.end(abortReason(signal)); return; }
        signal?.addEventListener('abort', cancel, { once: true });
        if (!conv) { this.scheduler.add(seq); return; }
        conv.after((err) => {
          if (err) { seq.fail(err); return; }
          if (seq.cancelRequested) { seq.end('cancelled'); return; }
          try {
            // A conversation's turn starts from the cache as its previous turn left it.
            seq.settings.carry = conv.state() ?? undefined;
            seq.forecast = forecastNow();
            conv.started(seq);
            this.scheduler.add(seq);
          } catch (e) {
            seq.fail(e as Error);
          }
        });
      },
      cancel,
      () => { if (conv) this.scheduler.poke(); },
    );
    const seq: Sequence = new Sequence(
      host,
      { ...opts, prompt: turn.prompt, maxTokens: turn.maxTokens, chunk: turn.chunk, ...(conv ? { keepLast: true, backpressure: true } : {}) },
      kv, forecastNow(), stream,
      (ev) => stream.push(ev),
      (err) => {
        signal?.removeEventListener('abort', cancel);
        conv?.ended(seq, err);
        stream.end(err ?? (seq.finish === 'cancelled' && signal?.aborted ? abortReason(signal) : null));
      },
    );
    if (conv) seq.readerBehind = () => !stream.waitingForEvents;
    return stream;
  }

  /**
   * A multi-turn conversation on one KV sequence: each `send` appends a turn (its prompt, then the
   * reply) to the same cache, compressed with one method for the whole conversation (`rocketkv-mt`
   * keeps everything and re-selects per turn; eviction methods evict again after each prompt).
   */
  conversation(
    kvRequest: CompressionRequest = { method: 'full' },
    /** What budget-splitting methods (rocketkv) size themselves for; default: the first turn. */
    plan?: { promptTokens: number; maxNewTokens: number },
  ): Conversation {
    const kv = resolveCompression(kvRequest);
    let state: { store: SequenceKV; session: CompressionSession } | null = null;
    let failed: Error | null = null;
    let closed = false;
    let turns = 0;
    let current: Sequence | null = null;
    // Turns run one after another: a turn starts once the previous one has ended.
    let previous: Promise<void> = Promise.resolve();
    const engine = this;
    return {
      send(input: PromptInput, opts: GenerateOptions = {}): Generation {
        if (closed) throw new UsageError('this conversation is closed; start a new one');
        if (failed) throw new UsageError(`this conversation failed earlier (${failed.message}); start a new one`);
        if (opts.from && turns > 0) throw new UsageError('only the first turn of a conversation can start from a prefilled prompt');
        const first = turns++ === 0;
        const wait = previous;
        let done!: () => void;
        previous = new Promise<void>((resolve) => { done = resolve; });
        return engine.request(input, opts, {
          kv,
          plan: first ? plan : undefined,
          state: () => state,
          after: (go) => {
            void wait.then(() => go(closed || failed ? new UsageError('this conversation is closed or failed; start a new one') : undefined));
          },
          started: (seq) => { current = seq; },
          ended: (seq, err) => {
            current = null;
            if (seq.kept) state = seq.kept;
            if (closed && state) {
              // Closed while this turn ran: its cache goes now.
              state.store.release();
              state = null;
              engine.scheduler.poke();
            }
            if (err && seq.everAdmitted) {
              // A turn that failed once running leaves heads of unequal lengths: the cache cannot go on.
              failed = err;
              if (state && !state.store.isReleased) state.store.release();
              state = null;
            }
            done();
          },
        });
      },
      close(): void {
        closed = true;
        if (current && !current.finished) {
          // A turn is running on the cache: it ends first (cancelled), then the cache is released.
          current.cancel();
        } else {
          state?.store.release();
          state = null;
        }
        engine.scheduler.poke();
      },
    };
  }

  /** Check a turn's settings and prompt against the context before any work. */
  private prepareTurn(input: PromptInput, opts: GenerateOptions, tokensBefore: number): { prompt: number[]; maxTokens: number; chunk: number } {
    validateSampling(opts);
    const maxTokens = opts.maxTokens ?? 128;
    if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new UsageError(`max tokens must be an integer >= 0, got ${opts.maxTokens}`);
    const chunk = opts.prefillChunkTokens ?? 512;
    if (!Number.isInteger(chunk) || chunk <= 0) throw new UsageError(`prefill chunk must be a positive integer, got ${chunk}`);
    const prompt = this.encodePrompt(input);
    if (prompt.length === 0) throw new UsageError('the prompt is empty: give at least one token');
    if (tokensBefore + prompt.length >= this.maxContextTokens) {
      throw new ContextLengthError(
        `the prompt is ${prompt.length} tokens${tokensBefore ? ` after ${tokensBefore} earlier ones` : ''}, the model's context is ${this.maxContextTokens}; shorten the prompt`,
      );
    }
    return { prompt, maxTokens: Math.min(maxTokens, this.maxContextTokens - tokensBefore - prompt.length - 1), chunk };
  }

  /** The model and pool shape that block forecasts take. */
  private forecastShape() {
    const c = this.config;
    return { layers: c.numLayers, kvHeads: c.numKvHeads, group: c.numHeads / c.numKvHeads, blockSlots: this.pool.blockSlots };
  }

  private shape() {
    const c = this.config;
    return { numLayers: c.numLayers, numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim };
  }

  private compressionFor(kv: ResolvedCompression, promptLength: number, maxTokens: number) {
    return createCompression(kv, {
      promptLength,
      maxNewTokens: maxTokens,
      shape: this.shape(),
      maxPositionEmbeddings: this.maxContextTokens,
      blockSlots: this.pool.blockSlots,
      ropeInvFreq: this.ropeInvFreq,
      modelPath: { path: this.dir, isFile: this.dirIsFile, fingerprint: this.fingerprint },
    });
  }

  private get dirIsFile(): boolean {
    return (this.isFileCache ??= statSync(this.dir).isFile());
  }

  private isFileCache: boolean | null = null;

  private get ropeInvFreq(): Float32Array {
    return (this.invFreqCache ??= ropeInvFreq(this.config));
  }

  private invFreqCache: Float32Array | null = null;

  /**
   * The most new tokens (at most `upTo`) a request of `promptLength` tokens can ask for and still fit
   * the KV limit at its forecast peak with method `kv`; 0 when even one does not fit. Servers use it
   * for requests that set no max_tokens: they then run to this length rather than being refused.
   */
  maxTokensThatFit(promptLength: number, kvRequest: CompressionRequest, upTo: number): number {
    const kv = resolveCompression(kvRequest);
    const c = this.config;
    const shape = this.forecastShape();
    const fits = (n: number): boolean => forecastBlocks(this.compressionFor(kv, promptLength, n), kv.budget, promptLength, n, shape).peak <= this.pool.capacityBlocks;
    if (fits(upTo)) return upTo;
    let lo = 0;
    let hi = upTo;
    // The forecast peak grows with the new tokens: the largest n that fits, by bisection.
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (fits(mid)) lo = mid;
      else hi = mid;
    }
    return lo;
  }

  /**
   * What `prefill` must keep of a prompt for a request's method to start from it: its observation
   * window (query rows; 0 without eviction) and, for methods that model queries, the first rows
   * its query statistics leave out (null: none needed).
   */
  prefillNeeds(kv: CompressionRequest, promptLength: number, maxNewTokens: number): { window: number; queryStatsSkip: number | null } {
    const ev = this.compressionFor(resolveCompression(kv), promptLength, maxNewTokens).eviction;
    return { window: ev?.windowSize ?? 0, queryStatsSkip: ev?.queryStats?.skip ?? null };
  }

  async close(): Promise<void> {
    this.scheduler.close(new UsageError('the engine was closed'));
    await this.runtime.close();
  }
}

/** Wasm memory kept free of the KV pool for activations, attention scratch and logits. */
export const ACTIVATION_RESERVE_BYTES = 512 * 2 ** 20;
/** Share of the rest that the KV pool takes by default. */
export const KV_MEMORY_SHARE = 0.9;

/** The KV pool's byte limit: the one asked for, checked against what is left, or the default share. */
export function kvMemoryLimit(rt: Runtime, asked: number | undefined): number {
  const left = Math.max(0, rt.bytesLeft() - ACTIVATION_RESERVE_BYTES);
  if (asked === undefined) {
    if (left < 64 * 2 ** 20) throw new WasmMemoryError(`the weights leave ${fmtBytes(left)} of wasm32's 4 GiB for the KV cache; use int8 weights or a smaller model`);
    return Math.floor(left * KV_MEMORY_SHARE);
  }
  if (!Number.isFinite(asked) || asked <= 0) throw new UsageError(`KV memory limit must be a positive number of bytes, got ${asked}`);
  if (asked > left) {
    throw new UsageError(`KV memory limit ${fmtBytes(asked)} is more than wasm32 leaves after the weights and ${fmtBytes(ACTIVATION_RESERVE_BYTES)} for activations (${fmtBytes(left)}); lower it`);
  }
  return asked;
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new DOMException('the request was aborted', 'AbortError');
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The model's hyperparameters: config.json of a directory, or a GGUF file's metadata. */
export async function readModelConfig(dir: string): Promise<ModelConfig> {
  return (await openModelSource(dir)).config;
}

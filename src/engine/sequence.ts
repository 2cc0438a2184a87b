/**
 * One request from admission to its last token: its KV store and compression session (present
 * while it runs), its sampler, stop matcher and text decoder (kept for its whole life), and the
 * step protocol every caller shares: the next work of a forward call (a prompt chunk, or one token
 * as a decode step), the blocks that work will append, and what follows the call (end of prefill:
 * the eviction stage and the first sample; after a decode step: continual methods, then the next
 * sample).
 *
 * Preemption by recompute drops the store and session but keeps the prompt, the tokens generated
 * and the sampler's state. On re-admission the prompt runs again in the same chunks, then the
 * generated tokens run again as decode steps without sampling, so the cache, the compression
 * decisions and every later token are those the uninterrupted run would have had.
 */
import type { SequenceKV } from '../kv/store.ts';
import type { ForwardItem, LlamaModel } from '../model/llama.ts';
import type { CompressionSession } from '../compress/session.ts';
import type { ResolvedCompression } from '../compress/registry.ts';
import type { BlockForecast } from '../compress/forecast.ts';
import { StreamDecoder, type Tokenizer } from '../model/tokenizer.ts';
import { Sampler, type SamplingOptions } from './sampling.ts';
import { StopMatcher } from './stop.ts';
import { kvReport } from './report.ts';
import type { FinishReason, GenerateEvent, GenerateStats, Generation, PrefilledPrompt } from './engine.ts';

/** What a sequence needs from its engine: a fresh store, a session on it, the tokenizer. */
export interface SequenceHost {
  readonly tokenizer: Tokenizer;
  readonly blockBytes: number;
  newStore(): SequenceKV;
  newSession(store: SequenceKV): CompressionSession;
  /** Benchmarks: the prompt's KV as random values (and a random observation window) instead of a prefill. */
  fillSynthetic(store: SequenceKV, session: CompressionSession, promptLength: number): void;
  readonly vocabSize: number;
}

export interface SequenceSettings extends SamplingOptions {
  prompt: number[];
  maxTokens: number;
  chunk: number;
  stop?: string[];
  ignoreEos?: boolean;
  skipEviction?: boolean;
  prefillOrder?: 'auto' | 'chunk';
  from?: PrefilledPrompt;
  syntheticPrompt?: boolean;
  /**
   * A conversation's turn: start from this store and session (earlier turns' cache) instead of new
   * ones. Such a sequence is never preempted (its earlier turns cannot be recomputed here).
   */
  carry?: { store: SequenceKV; session: CompressionSession };
  /**
   * Conversations: the last sampled token joins the cache when the turn ends, however it ends
   * (a reader leaving early included), and the store is kept (`kept`) rather than released.
   */
  keepLast?: boolean;
  /** Advance only when the reader has taken every token (a conversation's cache holds only tokens shown). */
  backpressure?: boolean;
  onPrefillProgress?: (done: number, total: number) => void;
}

/** One forward call's share of a sequence. */
export interface SequenceWork {
  tokens: number[];
  decode: boolean;
  /** The last chunk of the prompt: the eviction stage follows the call. */
  endsPrefill: boolean;
  /** The whole prompt, layer by layer (each layer evicted as soon as it is done): a step of its own. */
  byLayer?: boolean;
}

let nextId = 1;

export class Sequence {
  readonly id = nextId++;
  readonly settings: SequenceSettings;
  readonly kv: ResolvedCompression;
  forecast: BlockForecast;
  /** Where tokens, text and stats go as they are made. */
  readonly out: Generation;
  /** The store and session while admitted; null while waiting or once finished. */
  store: SequenceKV | null = null;
  session: CompressionSession | null = null;
  finish: FinishReason | null = null;
  error: Error | null = null;
  preemptions = 0;
  /** Set by cancel(); the scheduler ends the sequence before its next step. */
  cancelRequested = false;
  /** Whether the reader still has tokens to take (with `backpressure`, the sequence waits for it). */
  readerBehind: () => boolean = () => false;
  /** True once it was admitted at least once (its store or a carried cache was touched). */
  everAdmitted = false;
  /** With keepLast: the store and session once the turn ended (for the next turn). */
  kept: { store: SequenceKV; session: CompressionSession } | null = null;

  private readonly host: SequenceHost;
  private readonly sampler: Sampler;
  private readonly decoder: StreamDecoder;
  private readonly stop: StopMatcher;
  private readonly eos: Set<number>;
  private eosToken: number | null = null;
  private readonly emit: (ev: GenerateEvent) => void;
  private readonly ended: (err: Error | null) => void;
  /** Prompt tokens run through the model in this admission. */
  private prefilled = 0;
  /** Generated tokens run through the model in this admission (fewer than generated while replaying). */
  private forwarded = 0;
  private inDecode = false;
  private ranByLayer = false;
  /** keepLast: the turn is over once this token has run (its finish reason waits meanwhile). */
  private tail: number | null = null;
  private closing: FinishReason | null = null;
  private readsAtStart = { steps: 0, kBytes: 0, vBytes: 0, summaryBytes: 0 };
  private t0 = 0;
  private prefillMs = -1;
  private decodeStart = 0;
  private prefillPeakBlocks = 0;
  private decodePeakBlocks = 0;

  constructor(
    host: SequenceHost, settings: SequenceSettings, kv: ResolvedCompression, forecast: BlockForecast, out: Generation,
    emit: (ev: GenerateEvent) => void, ended: (err: Error | null) => void,
  ) {
    this.host = host;
    this.settings = settings;
    this.kv = kv;
    this.forecast = forecast;
    this.out = out;
    this.emit = emit;
    this.ended = ended;
    this.sampler = new Sampler(settings);
    this.decoder = new StreamDecoder(host.tokenizer);
    this.stop = new StopMatcher(settings.stop);
    this.eos = new Set(settings.ignoreEos ? [] : host.tokenizer.eosTokenIds);
  }

  get admitted(): boolean { return this.store !== null; }
  /** Free blocks admission needs: the prompt's uncompressed blocks beyond what a carried cache holds. */
  get blocksToAdmit(): number {
    return Math.max(0, this.forecast.prefillPeak - (this.settings.carry?.store.blocksHeld ?? 0));
  }
  /** A conversation's turn cannot be recomputed from its prompt alone. */
  get preemptible(): boolean { return this.settings.carry === undefined && !this.settings.keepLast; }
  /** With backpressure: waiting for its reader to take the tokens already made. */
  get stalled(): boolean {
    // A closing turn's last step shows nothing, and a reader that left waits for nothing.
    return this.settings.backpressure === true && !this.cancelRequested && this.tail === null && this.readerBehind();
  }
  get finished(): boolean { return this.finish !== null || this.error !== null; }
  /** True once the prompt has run in this admission (decode steps follow). */
  get prefillDone(): boolean { return this.inDecode; }
  /** Blocks the rest of this admission's prompt still needs, uncompressed (0 once prefilled). */
  get promptBlocksToCome(): number {
    if (!this.store || this.inDecode) return 0;
    return Math.max(0, this.forecast.prefillPeak - this.store.blocksHeld);
  }

  /** Admission: a fresh store and session (or a fork of the prefilled prompt it starts from). */
  start(): void {
    if (this.store) throw new Error(`sequence ${this.id} is already admitted`);
    if (this.t0 === 0) this.t0 = performance.now();
    this.everAdmitted = true;
    const carry = this.settings.carry;
    if (carry) {
      this.store = carry.store;
      this.session = carry.session;
      this.session.beginTurn();
      this.store.resetPeak();
      this.readsAtStart = { ...this.store.reads };
      this.prefilled = 0;
      this.forwarded = 0;
      this.inDecode = false;
      return;
    }
    // A prefilled prompt released since a preemption: the prompt runs again (same result).
    const from = this.settings.from;
    const fork = from !== undefined && !from.seq.isReleased;
    this.store = fork ? from.seq.fork() : this.host.newStore();
    try {
      this.session = this.host.newSession(this.store);
    } catch (e) {
      this.store.release();
      this.store = null;
      throw e;
    }
    this.prefilled = 0;
    this.forwarded = 0;
    this.inDecode = false;
    if (this.settings.syntheticPrompt) {
      this.host.fillSynthetic(this.store, this.session, this.settings.prompt.length);
      this.prefilled = this.settings.prompt.length;
      this.endPrefill(new Float32Array(this.host.vocabSize));
    } else if (fork) {
      // As if the session had watched the prefill: its observation window from the recorded rows.
      this.session.adoptWindow(from.window, from.stats);
      this.prefilled = this.settings.prompt.length;
      this.endPrefill(from.logits);
    }
  }

  /**
   * The work of the next forward call; only for an admitted, unfinished sequence. `alone`: no other
   * sequence is admitted or waiting (a layer-by-layer prefill would hold no one up).
   */
  nextWork(alone = false): SequenceWork {
    if (this.tail !== null) return { tokens: [this.tail], decode: true, endsPrefill: false };
    const p = this.settings.prompt;
    if (this.prefilled === 0 && this.byLayer(alone)) return { tokens: p.slice(), decode: false, endsPrefill: true, byLayer: true };
    if (this.prefilled < p.length) {
      // Chunks start at multiples of the chunk size, as in a run alone.
      const end = Math.min(p.length, this.prefilled + this.settings.chunk);
      return { tokens: p.slice(this.prefilled, end), decode: false, endsPrefill: end === p.length };
    }
    const token = this.out.tokens[this.forwarded];
    if (token === undefined) throw new Error(`sequence ${this.id} has no token to run`);
    return { tokens: [token], decode: true, endsPrefill: false };
  }

  private byLayer(alone: boolean): boolean {
    const s = this.settings;
    if (!alone || s.prefillOrder === 'chunk' || s.skipEviction || s.syntheticPrompt) return false;
    return this.session!.evictLayerwise(s.prompt.length, false);
  }

  /** Runs a `byLayer` work: the whole prompt, each layer evicted when done; then as afterForward. */
  runByLayer(model: LlamaModel, work: SequenceWork): void {
    const P = this.settings.prompt.length;
    this.session!.evictLayerwise(P, true);
    this.ranByLayer = true;
    const layers = this.store!.layers;
    const logits = model.prefillByLayer({ seq: this.store!, tokens: work.tokens, hooks: this.session! }, this.settings.chunk, (done) => {
      this.settings.onPrefillProgress?.(Math.floor((done * P) / layers), P);
    });
    this.prefilled = P;
    this.endPrefill(logits);
  }

  /** Blocks the work will take: its appends, plus the GQA copies of an eviction that expands. */
  blocksFor(work: SequenceWork): number {
    const store = this.store!;
    let n = store.blocksToAppend(work.tokens.length);
    if (work.endsPrefill && !this.settings.skipEviction) {
      n += Math.max(0, this.forecast.prefillPeak - (store.blocksHeld + n));
    }
    return n;
  }

  item(work: SequenceWork): ForwardItem {
    return { seq: this.store!, tokens: work.tokens, hooks: this.session!, decode: work.decode };
  }

  /** After the forward call that ran `work`: eviction, sampling, events. */
  afterForward(work: SequenceWork, logits: Float32Array): void {
    if (!work.decode) {
      this.prefilled += work.tokens.length;
      this.settings.onPrefillProgress?.(this.prefilled, this.settings.prompt.length);
      if (this.prefilled === this.settings.prompt.length) this.endPrefill(logits);
      return;
    }
    this.session!.afterDecodeStep();
    if (this.tail !== null) {
      // keepLast: the turn's last token has joined the cache.
      this.tail = null;
      this.end(this.closing!);
      return;
    }
    this.forwarded++;
    // Replaying after a preemption: the tokens were sampled already.
    if (this.forwarded === this.out.tokens.length) this.sampleNext(logits);
  }

  private endPrefill(logits: Float32Array): void {
    const store = this.store!;
    this.session!.afterPrefill(store.nextPosition, this.settings.skipEviction ?? false);
    this.prefillPeakBlocks = Math.max(this.prefillPeakBlocks, store.peakBlocks);
    // The decode phase's peak is measured on its own (RocketKV's paper resets the peak before decoding).
    store.resetPeak();
    this.inDecode = true;
    if (this.prefillMs < 0) {
      this.prefillMs = (this.settings.from && !this.settings.from.seq.isReleased ? this.settings.from.prefillMs : 0) + performance.now() - this.t0;
      this.decodeStart = performance.now();
    }
    if (this.out.tokens.length === 0) this.sampleNext(logits);
  }

  private sampleNext(logits: Float32Array): void {
    if (this.out.tokens.length >= this.settings.maxTokens) { this.end('length'); return; }
    const token = this.sampler.sample(logits);
    if (this.eos.has(token)) { this.eosToken = token; this.finishAfter(token, 'eos'); return; }
    this.out.tokens.push(token);
    const text = this.stop.push(this.decoder.push(token));
    this.out.text += text;
    this.emit({ token, text });
    if (this.stop.stopped) { this.finishAfter(token, 'stop'); return; }
    if (this.out.tokens.length >= this.settings.maxTokens) this.finishAfter(token, 'length');
  }

  /** Ends the turn; with keepLast, once `token` (sampled, not yet run) has joined the cache. */
  private finishAfter(token: number, reason: FinishReason): void {
    if (!this.settings.keepLast) { this.end(reason); return; }
    this.tail = token;
    this.closing = reason;
  }

  /**
   * Cancelled by its reader: with keepLast the last token shown joins the cache first (one more
   * step); false when the sequence can end at once.
   */
  closeEarly(): boolean {
    if (!this.settings.keepLast || !this.inDecode || this.tail !== null) return this.tail !== null;
    const token = this.out.tokens[this.forwarded];
    if (token === undefined) return false;
    this.tail = token;
    this.closing = 'cancelled';
    return true;
  }

  /** Drops the store and session (blocks back to the pool); the request waits to run again. */
  preempt(): void {
    this.notePeaks();
    this.store?.release();
    this.store = null;
    this.session = null;
    this.preemptions++;
  }

  cancel(): void {
    this.cancelRequested = true;
  }

  /** Ends the sequence with an error; its blocks go back to the pool. */
  fail(err: Error): void {
    if (this.finished) return;
    this.error = err;
    this.store?.release();
    this.store = null;
    this.session = null;
    this.ended(err);
  }

  private notePeaks(): void {
    const store = this.store;
    if (!store) return;
    if (this.inDecode) this.decodePeakBlocks = Math.max(this.decodePeakBlocks, store.peakBlocks);
    else this.prefillPeakBlocks = Math.max(this.prefillPeakBlocks, store.peakBlocks);
  }

  /** Ends the sequence normally (or cancelled): flushes text, fills stats, frees its blocks. */
  end(reason: FinishReason): void {
    if (this.finished) return;
    this.finish = reason;
    const rest = this.stop.push(this.decoder.flush()) + this.stop.flush();
    if (rest && reason !== 'cancelled') {
      this.out.text += rest;
      this.emit({ token: -1, text: rest });
    }
    const store = this.store;
    if (store && this.session) {
      this.notePeaks();
      const bb = this.host.blockBytes;
      const request = Math.max(this.prefillPeakBlocks, this.decodePeakBlocks) * bb;
      const decode = this.decodePeakBlocks * bb;
      this.out.stats = {
        promptTokens: this.settings.prompt.length,
        generatedTokens: this.out.tokens.length,
        prefillMs: Math.max(0, this.prefillMs),
        decodeMs: this.prefillMs < 0 ? 0 : performance.now() - this.decodeStart,
        kvBytes: store.blockBytes(),
        kvPeakBytes: request,
        kvPeakDecodeBytes: decode,
        finishReason: reason,
        kv: kvReport(store, this.kv.entry.name, this.kv.budget, { request, decode }, this.session.evictions, {
          steps: store.reads.steps - this.readsAtStart.steps,
          kBytes: store.reads.kBytes - this.readsAtStart.kBytes,
          vBytes: store.reads.vBytes - this.readsAtStart.vBytes,
          summaryBytes: store.reads.summaryBytes - this.readsAtStart.summaryBytes,
        }),
        preemptions: this.preemptions,
        prefillOrder: this.ranByLayer ? 'layer' : 'chunk',
        ...(reason === 'eos' && this.eosToken !== null ? { eosToken: this.eosToken } : {}),
      } satisfies GenerateStats;
    }
    if (this.settings.keepLast && store && this.session) this.kept = { store, session: this.session };
    else store?.release();
    this.store = null;
    this.session = null;
    this.ended(null);
  }
}

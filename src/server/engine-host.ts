/**
 * The HTTP thread's handle on the engine thread: starts it, forwards requests and cancellations,
 * and turns its messages back into per-request callbacks and promises.
 */
import type { Worker } from 'node:worker_threads';
import { spawnWorker } from '../runtime/threads.ts';
import type { GenerateStats, PromptInput } from '../engine/engine.ts';
import { GAUGES, gaugeIndex, type EngineLoad, type FromEngine, type GaugeName, type ModelInfo, type ToEngine, type WireError, type WireGenerateOptions } from './protocol.ts';

/** An error raised on the engine thread, with its class name and code kept. */
export class EngineError extends Error {
  readonly code: string;
  readonly kind: string;
  constructor(w: WireError) {
    super(w.message);
    this.kind = w.name;
    this.code = w.code;
  }
}

export interface RemoteResult { text: string; stats: GenerateStats; cachedTokens: number }

/** One request on the engine thread, once accepted. */
export interface RemoteRequest {
  readonly id: number;
  readonly promptTokens: number;
  /** Settles when the request ends: its text and stats, or the error it ended with. */
  readonly done: Promise<RemoteResult>;
}

interface Pending {
  onToken: (text: string, token: number) => void;
  accept: (r: RemoteRequest) => void;
  refuse: (e: Error) => void;
  settle?: { resolve: (r: RemoteResult) => void; reject: (e: Error) => void };
}

export type HostState = 'loading' | 'ready' | 'failed' | 'closing' | 'closed';

export class EngineHost {
  state: HostState = 'loading';
  info: ModelInfo | null = null;
  /** Why the engine thread failed (load error or crash). */
  failure: Error | null = null;
  readonly ready: Promise<ModelInfo>;
  private readonly worker: Worker;
  private readonly gauges: Float64Array;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closedPromise: Promise<void>;

  constructor(load: EngineLoad, onProgress?: (done: number, total: number) => void) {
    const shared = new SharedArrayBuffer(GAUGES.length * 8);
    this.gauges = new Float64Array(shared);
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    this.worker = spawnWorker(new URL(`./worker${ext}`, import.meta.url), ext, { load, gauges: shared });
    let readyResolve!: (i: ModelInfo) => void;
    let readyReject!: (e: Error) => void;
    this.ready = new Promise((res, rej) => { readyResolve = res; readyReject = rej; });
    this.ready.catch(() => {});
    let closedResolve!: () => void;
    this.closedPromise = new Promise((res) => { closedResolve = res; });
    this.worker.on('message', (m: FromEngine) => {
      switch (m.type) {
        case 'progress': onProgress?.(m.done, m.total); break;
        case 'ready': this.info = m.info; this.state = 'ready'; readyResolve(m.info); break;
        case 'load-failed': this.fail(new EngineError(m.error)); readyReject(this.failure!); break;
        case 'accepted': {
          const p = this.pending.get(m.id);
          if (!p) break;
          const done = new Promise<RemoteResult>((resolve, reject) => { p.settle = { resolve, reject }; });
          done.catch(() => {});
          p.accept({ id: m.id, promptTokens: m.promptTokens, done });
          break;
        }
        case 'token': this.pending.get(m.id)?.onToken(m.text, m.token); break;
        case 'done': {
          const p = this.pending.get(m.id);
          this.pending.delete(m.id);
          p?.settle?.resolve({ text: m.text, stats: m.stats, cachedTokens: m.cachedTokens });
          break;
        }
        case 'failed': {
          const p = this.pending.get(m.id);
          this.pending.delete(m.id);
          const err = new EngineError(m.error);
          if (m.accepted) p?.settle?.reject(err);
          else p?.refuse(err);
          break;
        }
        case 'closed': this.state = 'closed'; break;
      }
    });
    this.worker.on('error', (e) => { this.fail(new Error(`the engine thread stopped: ${e.message}`)); readyReject(this.failure!); });
    this.worker.on('exit', (code) => {
      if (this.state !== 'closed' && this.state !== 'failed' && this.state !== 'closing') this.fail(new Error(`the engine thread exited (code ${code})`));
      // Whatever is still pending (a thread stopped by force at shutdown) ends now.
      this.rejectPending(new Error(this.state === 'closing' ? 'the server is shutting down' : `the engine thread exited (code ${code})`));
      readyReject(this.failure ?? new Error('the engine thread exited'));
      closedResolve();
    });
  }

  /** The engine thread's last published value of a scheduler or pool gauge. */
  gauge(name: GaugeName): number {
    return this.gauges[gaugeIndex(name)]!;
  }

  /** Requests sent to the engine and not yet ended (accepted or awaiting acceptance). */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Sends a request; resolves once the engine has accepted it (every check passed, queued), rejects
   * with the engine's error when it is refused. `onToken` gets each piece of text as it is made.
   * `more.session`: a turn of that session's cached conversation (see sessions.ts); `more.fitMaxTokens`:
   * opts.maxTokens is a default, lowered to what fits the KV limit; `more.signal` cancels the request,
   * accepted yet or not.
   */
  submit(input: PromptInput, opts: WireGenerateOptions, onToken: (text: string, token: number) => void, more: { session?: string; fitMaxTokens?: boolean; signal?: AbortSignal } = {}): Promise<RemoteRequest> {
    if (this.state !== 'ready') return Promise.reject(this.failure ?? new Error(`the engine is ${this.state}`));
    const id = this.nextId++;
    const { signal, ...extra } = more;
    return new Promise<RemoteRequest>((accept, refuse) => {
      this.pending.set(id, { onToken, accept, refuse });
      this.post({ type: 'submit', id, input, opts, ...extra });
      // Cancelling works before acceptance too: the engine thread knows the request from its submit on.
      signal?.addEventListener('abort', () => { if (this.pending.has(id)) this.post({ type: 'cancel', id }); }, { once: true });
    });
  }

  /** Cancels everything still running, lets the engine end, and stops its thread. */
  async close(): Promise<void> {
    if (this.state === 'ready') {
      this.state = 'closing';
      this.post({ type: 'close' });
      const timer = setTimeout(() => void this.worker.terminate(), 10_000);
      await this.closedPromise;
      clearTimeout(timer);
    } else if (this.state !== 'closed') {
      await this.worker.terminate();
      await this.closedPromise;
    }
    this.state = 'closed';
  }

  private post(m: ToEngine): void {
    this.worker.postMessage(m);
  }

  private fail(e: Error): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.state = 'failed';
    this.failure = e;
    this.rejectPending(e);
  }

  private rejectPending(e: Error): void {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      if (p.settle) p.settle.reject(e);
      else p.refuse(e);
    }
  }
}

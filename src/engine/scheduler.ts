/**
 * Continuous batching under the KV pool's fixed capacity. Every step is one forward call that
 * carries each running sequence's decode token and, within a token budget, prompt chunks of
 * sequences still prefilling; first come, first served.
 *
 * - Before the call, every piece of work reserves the blocks it will append (all or nothing), so a
 *   kernel never runs out of blocks halfway through a layer.
 * - A decode step that cannot reserve preempts the latest admitted sequence (by recompute: its
 *   blocks go back at once, it waits at the head of the queue and later runs its prompt and tokens
 *   again; see sequence.ts), as vLLM's scheduler does.
 * - A waiting request is admitted when the free blocks, less what admitted prompts still need,
 *   cover its prompt uncompressed (its forecast prefill peak); one that could never fit was refused
 *   when it was submitted.
 * - Cancellation takes effect before the next step and frees the request's blocks at once.
 *
 * The scheduler decides when; each request's method decides what is kept; the pool only counts.
 */
import type { BlockPool } from '../kv/pool.ts';
import { PoolExhaustedError, fmtBytes } from '../kv/pool.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Sequence, SequenceWork } from './sequence.ts';

export interface SchedulerOptions {
  /**
   * Tokens one step carries at most: decode tokens plus prompt chunks (default 512). The step's
   * first chunk runs whatever its size, so prompts make progress beside any decode batch.
   */
  maxBatchTokens?: number;
  /** Sequences admitted at once at most (default 256). */
  maxRunning?: number;
}

export interface SchedulerStats {
  steps: number;
  preemptions: number;
  /** The most sequences decoding in one step. */
  maxDecodeBatch: number;
  /** Generated tokens whose KV preemption dropped (run again on resumption). */
  recomputedTokens: number;
  /** Steps that carried decode rows, and the decode rows they carried. */
  decodeSteps: number;
  decodeRows: number;
}

export class Scheduler {
  readonly maxBatchTokens: number;
  readonly maxRunning: number;
  readonly stats: SchedulerStats = { steps: 0, preemptions: 0, maxDecodeBatch: 0, recomputedTokens: 0, decodeSteps: 0, decodeRows: 0 };
  private readonly model: LlamaModel;
  private readonly pool: BlockPool;
  private waiting: Sequence[] = [];
  /** Admitted sequences, in admission order. */
  private running: Sequence[] = [];
  /**
   * Asked when a waiting request needs `blocks` more than are free: returns true if it gave some
   * back (e.g. released an idle conversation's cache), and admission is tried again.
   */
  reclaim: ((blocks: number) => boolean) | null = null;
  /** Called after every step of the loop (a server publishes its gauges from here). */
  onStep: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private closed = false;

  constructor(model: LlamaModel, pool: BlockPool, opts: SchedulerOptions = {}) {
    this.model = model;
    this.pool = pool;
    this.maxBatchTokens = opts.maxBatchTokens ?? 512;
    this.maxRunning = opts.maxRunning ?? 256;
    if (!Number.isInteger(this.maxBatchTokens) || this.maxBatchTokens < 1) throw new RangeError(`maxBatchTokens must be a positive integer, got ${opts.maxBatchTokens}`);
    if (!Number.isInteger(this.maxRunning) || this.maxRunning < 1) throw new RangeError(`maxRunning must be a positive integer, got ${opts.maxRunning}`);
  }

  get waitingCount(): number { return this.waiting.length; }
  get runningCount(): number { return this.running.length; }

  /** Queues a sequence; refuses, before any work, one whose forecast peak exceeds the pool. */
  add(seq: Sequence): void {
    if (this.closed) throw new Error('the engine is closed');
    const f = seq.forecast;
    const cap = this.pool.capacityBlocks;
    if (f.peak > cap) {
      const bb = this.pool.blockBytes;
      throw new PoolExhaustedError(
        `this request can never fit the KV memory limit: ${seq.kv.entry.name === 'full' ? 'with the full cache' : `with ${seq.kv.entry.name} (budget ${seq.kv.budget})`}, ` +
          `${seq.settings.prompt.length} prompt tokens and up to ${seq.settings.maxTokens} new ones need ${f.peak} blocks (${fmtBytes(f.peak * bb)}) at their peak, ` +
          `the limit holds ${cap} (${fmtBytes(cap * bb)}); raise the KV memory limit, shorten the prompt, lower max tokens or use a compression method`,
      );
    }
    this.waiting.push(seq);
    this.kick();
  }

  /** Resolves when every queued and running sequence has ended. */
  idle(): Promise<void> {
    return this.loop ?? Promise.resolve();
  }

  /** Ends every sequence with `err` and refuses new ones. */
  close(err: Error): void {
    this.closed = true;
    for (const s of [...this.running, ...this.waiting]) s.fail(err);
    this.running = [];
    this.waiting = [];
  }

  /**
   * Something may have changed for a sequence that could not advance (a reader took its tokens,
   * a request was cancelled, blocks were freed outside the scheduler): run a step soon.
   */
  poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private kick(): void {
    this.poke();
    if (this.loop) return;
    this.loop = (async () => {
      try {
        // The first step waits for the current task to end: the caller of add() gets control back
        // at once, and requests submitted together are admitted together.
        await new Promise<void>((resolve) => setImmediate(resolve));
        while (this.waiting.length > 0 || this.running.length > 0) {
          // A step that ran nothing waits for a poke rather than spinning.
          const ran = this.step();
          this.onStep?.();
          if (ran) await new Promise<void>((resolve) => setImmediate(resolve));
          else await new Promise<void>((resolve) => { this.wake = resolve; });
        }
      } finally {
        this.loop = null;
        this.onStep?.();
      }
    })();
  }

  /** One step: cancellations, then decode work, then prompt chunks, then one forward call. False when nothing ran. */
  step(): boolean {
    let changed = false;
    for (const s of [...this.running, ...this.waiting]) {
      // A conversation's turn keeps its last shown token: one more step, then it ends.
      if (s.cancelRequested && !s.finished && !(s.admitted && s.closeEarly())) { s.end('cancelled'); changed = true; }
    }
    this.prune();

    const planned: { seq: Sequence; work: SequenceWork }[] = [];
    // Decode work first, earliest admitted first; a sequence that cannot grow preempts the latest.
    for (const seq of [...this.running]) {
      if (!seq.admitted || !seq.prefillDone || seq.stalled) continue;
      const work = seq.nextWork();
      if (this.reserveOrPreempt(seq, work, planned)) planned.push({ seq, work });
    }
    const decodeRows = planned.length;

    // Prompt chunks within the token budget: admitted prompts first, then admissions in order.
    let budget = this.maxBatchTokens - decodeRows;
    let chunks = 0;
    const takeChunk = (seq: Sequence): boolean => {
      const alone = planned.length === 0 && this.running.length === 1 && this.waiting.length === 0;
      const work = seq.nextWork(alone);
      // The first chunk of a step runs whatever its size, so prompts progress beside any decode batch.
      if (work.tokens.length > budget && chunks > 0) return false;
      if (!seq.store!.tryReserve(seq.blocksFor(work))) return false;
      planned.push({ seq, work });
      budget -= work.tokens.length;
      chunks++;
      return true;
    };
    for (const seq of this.running) {
      if (budget <= 0 && chunks > 0) break;
      if (seq.admitted && !seq.prefillDone && !seq.finished && !takeChunk(seq)) break;
    }
    while (this.waiting.length > 0 && this.running.length < this.maxRunning && (budget > 0 || chunks === 0)) {
      const seq = this.waiting[0]!;
      const promised = this.running.reduce((n, s) => n + s.promptBlocksToCome, 0);
      if (this.pool.freeBlocks - promised < seq.blocksToAdmit) {
        // Caches held outside the scheduler (idle conversations a server keeps) are asked first.
        if (this.reclaim?.(seq.blocksToAdmit - (this.pool.freeBlocks - promised))) continue;
        if (this.running.length === 0) {
          // Nothing runs and nothing will free blocks: the limit is held elsewhere (e.g. a conversation's cache).
          this.waiting.shift();
          seq.fail(new PoolExhaustedError(`the KV pool has ${this.pool.freeBlocks} free blocks, this request's prompt needs ${seq.blocksToAdmit}, and nothing running will free any; release other caches (close conversations) or raise the KV memory limit`));
          changed = true;
          continue;
        }
        break;
      }
      this.waiting.shift();
      changed = true;
      try {
        seq.start();
      } catch (e) {
        seq.fail(e as Error);
        continue;
      }
      this.running.push(seq);
      if (seq.finished) continue; // a fork whose first sample ended it
      if (seq.prefillDone) {
        // Started from a prefilled prompt: it decodes from this step on.
        const work = seq.nextWork();
        if (this.reserveOrPreempt(seq, work, planned)) { planned.push({ seq, work }); budget--; }
        continue;
      }
      if (!takeChunk(seq)) break;
    }

    this.prune();
    if (planned.length === 0) {
      // Admitted sequences that could not reserve even alone: nothing else can free blocks for them.
      if (this.running.length > 0 && this.running.every((s) => s.admitted && !s.stalled) && this.waiting.length === 0) {
        for (const s of this.running) s.fail(new PoolExhaustedError(`the KV pool cannot serve the next step: ${this.pool.blocksInUse} blocks in use, limit ${this.pool.capacityBlocks}; raise the KV memory limit or close conversations`));
        this.prune();
        return true;
      }
      return changed;
    }
    this.stats.steps++;
    if (planned.length === 1 && planned[0]!.work.byLayer) {
      const { seq, work } = planned[0]!;
      try {
        seq.runByLayer(this.model, work);
      } catch (e) {
        seq.fail(e as Error);
      }
      seq.store?.dropReservation();
      this.prune();
      return true;
    }
    const decoding = planned.filter((p) => p.work.decode).length;
    this.stats.maxDecodeBatch = Math.max(this.stats.maxDecodeBatch, decoding);
    if (decoding > 0) { this.stats.decodeSteps++; this.stats.decodeRows += decoding; }
    let outs: Float32Array[];
    try {
      outs = this.model.forward(planned.map((p) => p.seq.item(p.work)));
    } catch (e) {
      // A call that failed halfway leaves its sequences' heads of unequal lengths: they end.
      for (const p of planned) p.seq.fail(e as Error);
      this.prune();
      return true;
    }
    for (let i = 0; i < planned.length; i++) {
      const { seq, work } = planned[i]!;
      seq.store!.dropReservation();
      try {
        seq.afterForward(work, outs[i]!);
      } catch (e) {
        seq.fail(e as Error);
      }
    }
    this.prune();
    return true;
  }

  /**
   * Reserves the blocks of `seq`'s work, preempting the latest admitted sequences (never one
   * already planned this step) until it fits. False when `seq` itself was preempted or failed.
   */
  private reserveOrPreempt(seq: Sequence, work: SequenceWork, planned: { seq: Sequence }[]): boolean {
    const need = seq.blocksFor(work);
    while (!seq.store!.tryReserve(need)) {
      const victim = [...this.running].reverse().find((s) => s.admitted && s.preemptible && !planned.some((p) => p.seq === s));
      if (!victim || (victim === seq && this.running.filter((s) => s.admitted).length === 1)) {
        seq.fail(new PoolExhaustedError(
          `the KV pool cannot grow this sequence: it needs ${need} more blocks, ${this.pool.freeBlocks} are free of ${this.pool.capacityBlocks}, and no other sequence can be preempted; raise the KV memory limit or use a compression method`,
        ));
        this.prune();
        return false;
      }
      this.stats.recomputedTokens += victim.out.tokens.length;
      victim.preempt();
      this.stats.preemptions++;
      this.running.splice(this.running.indexOf(victim), 1);
      this.waiting.unshift(victim);
      if (victim === seq) return false;
    }
    return true;
  }

  private prune(): void {
    this.running = this.running.filter((s) => !s.finished);
    this.waiting = this.waiting.filter((s) => !s.finished);
  }
}

/**
 * A request's tokens as an async iterable: the scheduler pushes events as they are made, the
 * consumer reads them at its own pace. Breaking out of the loop cancels the request; an abort
 * signal cancels it and the loop throws the signal's reason.
 */
import type { GenerateEvent, GenerateStats, Generation } from './engine.ts';

export class TokenStream implements Generation {
  stats: GenerateStats | null = null;
  text = '';
  tokens: number[] = [];
  private queue: GenerateEvent[] = [];
  private wake: (() => void) | null = null;
  private done = false;
  private error: Error | null = null;
  private started = false;

  /**
   * `start` runs at the first read (or at once when called); `cancel` when the reader leaves early;
   * `wait` each time the reader has taken every event and waits for the next.
   */
  constructor(private readonly onStart: () => void, private readonly onCancel: () => void, private readonly onWait: () => void = () => {}) {}

  private readerWaiting = false;

  /** True while the reader has taken every event and asks for the next one. */
  get waitingForEvents(): boolean { return this.readerWaiting; }

  push(ev: GenerateEvent): void {
    this.queue.push(ev);
    this.readerWaiting = false;
    this.notify();
  }

  end(err: Error | null): void {
    this.done = true;
    this.error = err;
    this.notify();
  }

  /** Starts the request now rather than at the first read. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.onStart();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<GenerateEvent> {
    this.start();
    try {
      for (;;) {
        const ev = this.queue.shift();
        if (ev !== undefined) { yield ev; continue; }
        if (this.done) {
          if (this.error) throw this.error;
          return;
        }
        const next = new Promise<void>((resolve) => { this.wake = resolve; });
        this.readerWaiting = true;
        this.onWait();
        await next;
        this.readerWaiting = false;
      }
    } finally {
      if (!this.done) this.onCancel();
    }
  }
}

// Worker pool: parallel-for over an index range. Every thread, the calling one included, takes
// chunks of the range from one shared counter until none is left, so a thread that starts late or
// runs slower (a busy core, a worker waking from sleep) simply takes fewer chunks. Control lives in
// a small SharedArrayBuffer; workers spin briefly then sleep in Atomics.wait.
import { Worker } from 'node:worker_threads';

/** Int32 slots of the control block. */
export const CTL = {
  GEN: 0, // bumped once per dispatch; workers wait on it
  KERNEL: 1, // index into the kernel name list, -1 = exit
  NARGS: 2,
  DONE: 3, // workers finished in this dispatch
  ERROR: 4, // non-zero when a worker threw; message in the text area
  N: 5, // the range is [0, N)
  CHUNK: 6, // items per chunk
  NEXT: 7, // start of the next chunk not yet taken (Atomics.add)
  INTS: 8, // Int32 slots in all
} as const;
export const CTL_TEXT_BYTES = 2048; // UTF-8 error message of a failed worker
export const MAX_ARGS = 28;
/** Threads one runtime may run (the calling one included); more is refused with a clear error. */
export const MAX_THREADS = 1024;

/**
 * Where each part of the control block lives for a given thread count: the Int32 slots of CTL, the
 * f64 arguments, one f64 result per thread, the error text. Sized from the thread count, so every
 * thread has its own result slot.
 */
export interface ControlLayout {
  threads: number;
  /** Int32 slots before the arguments (CTL's fields). */
  ints: number;
  argsByte: number;
  resultsByte: number;
  textByte: number;
  bytes: number;
}

export function controlLayout(threads: number): ControlLayout {
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
    throw new RangeError(`threads must be an integer from 1 to ${MAX_THREADS}, got ${threads}`);
  }
  const ints = CTL.INTS;
  const argsByte = Math.ceil((ints * 4) / 8) * 8;
  const resultsByte = argsByte + MAX_ARGS * 8;
  const textByte = resultsByte + threads * 8;
  return { threads, ints, argsByte, resultsByte, textByte, bytes: textByte + CTL_TEXT_BYTES };
}
/** Chunks per thread of one dispatch: enough for a late or slow thread to be made up by the others. */
const CHUNKS_PER_THREAD = 8;
/** Polls before a waiting thread sleeps; a few tens of microseconds of spinning. */
export const SPIN_POLLS = 20000;

export interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
  layout: ControlLayout;
  thread: number;
  kernelNames: readonly string[];
  scratchPtr: number;
  scratchBytes: number;
}

/**
 * Node 20 workers do not inherit tsx's module hooks, so under tsx the worker registers them
 * itself before importing worker.ts; compiled .js workers load directly.
 */
export function spawnWorker<T>(url: URL, ext: string, init: T): Worker {
  if (ext !== '.ts') return new Worker(url, { workerData: init });
  const api = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`;
  return new Worker(boot, { eval: true, workerData: init });
}

type KernelFn = (...args: number[]) => number | undefined;

export class ThreadPool {
  readonly threads: number;
  private readonly ctl: Int32Array;
  private readonly args: Float64Array;
  private readonly results: Float64Array;
  private readonly text: Uint8Array;
  private readonly workers: Worker[] = [];
  private readonly argArrays: number[][] = [];
  private closed = false;

  private constructor(layout: ControlLayout, control: SharedArrayBuffer) {
    this.threads = layout.threads;
    this.ctl = new Int32Array(control, 0, layout.ints);
    this.args = new Float64Array(control, layout.argsByte, MAX_ARGS);
    this.results = new Float64Array(control, layout.resultsByte, layout.threads);
    this.text = new Uint8Array(control, layout.textByte, CTL_TEXT_BYTES);
  }

  /** Starts threads - 1 workers on the same module and memory and waits until each is ready. */
  static async start(
    threads: number,
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    kernelNames: readonly string[],
    scratch: (thread: number) => { ptr: number; bytes: number },
  ): Promise<ThreadPool> {
    const layout = controlLayout(threads);
    const control = new SharedArrayBuffer(layout.bytes);
    const pool = new ThreadPool(layout, control);
    // Same extension as this module: .ts under tsx, .js once compiled to dist/.
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    const url = new URL(`./worker${ext}`, import.meta.url);
    const ready: Promise<void>[] = [];
    for (let t = 1; t < threads; t++) {
      const s = scratch(t);
      const init: WorkerInit = { module, memory, control, layout, thread: t, kernelNames, scratchPtr: s.ptr, scratchBytes: s.bytes };
      const w = spawnWorker(url, ext, init);
      pool.workers.push(w);
      ready.push(new Promise<void>((resolve, reject) => {
        w.once('message', () => resolve());
        w.once('error', reject);
        w.once('exit', (code) => reject(new Error(`kernel worker ${t} exited with code ${code} before it was ready`)));
      }));
    }
    try {
      await Promise.all(ready);
    } catch (e) {
      await pool.close();
      throw e;
    }
    // Idle workers must not keep the process alive if close() is forgotten.
    for (const w of pool.workers) { w.removeAllListeners('exit'); w.removeAllListeners('error'); w.unref(); }
    return pool;
  }

  /**
   * Runs kernel `kernel` on [0, n) in contiguous chunks (multiples of `grain`, about eight per
   * thread) that the threads take in turn from a shared counter; the calling thread takes chunks
   * with `self`. Returns the sum of every chunk's return value. Which thread computes a chunk does
   * not change its result: kernels compute each index of the range on its own.
   */
  run(kernel: number, self: KernelFn, args: readonly number[], n: number, grain: number): number {
    if (this.closed) throw new Error('runtime is closed');
    const nw = this.workers.length;
    const chunk = Math.max(grain, Math.ceil(n / ((nw + 1) * CHUNKS_PER_THREAD) / grain) * grain);
    const ctl = this.ctl;
    for (let i = 0; i < args.length; i++) this.args[i] = args[i];
    ctl[CTL.KERNEL] = kernel;
    ctl[CTL.NARGS] = args.length;
    ctl[CTL.N] = n;
    ctl[CTL.CHUNK] = chunk;
    Atomics.store(ctl, CTL.NEXT, 0);
    Atomics.store(ctl, CTL.DONE, 0);
    Atomics.add(ctl, CTL.GEN, 1);
    Atomics.notify(ctl, CTL.GEN);
    let total = 0;
    let err: unknown;
    // One argument array per arity, reused: a dispatch allocates nothing.
    const a = (this.argArrays[args.length] ??= new Array<number>(args.length + 2).fill(0));
    for (let i = 0; i < args.length; i++) a[i] = args[i]!;
    try {
      for (;;) {
        const start = Atomics.add(ctl, CTL.NEXT, chunk);
        if (start >= n) break;
        a[args.length] = start;
        a[args.length + 1] = Math.min(n, start + chunk);
        total += Number(Reflect.apply(self, undefined, a) ?? 0);
      }
    } catch (e) {
      err = e;
      // Let the workers run out of chunks: nothing is left for them to take.
      Atomics.store(ctl, CTL.NEXT, n);
    }
    this.waitDone(nw);
    if (err !== undefined) throw err;
    if (ctl[CTL.ERROR] !== 0) {
      ctl[CTL.ERROR] = 0;
      const len = this.text.indexOf(0);
      throw new Error(`kernel worker failed: ${Buffer.from(this.text.slice(0, len < 0 ? CTL_TEXT_BYTES : len)).toString('utf8')}`);
    }
    for (let t = 1; t <= nw; t++) total += this.results[t];
    return total;
  }

  private waitDone(nw: number): void {
    const ctl = this.ctl;
    for (let i = 0; i < SPIN_POLLS; i++) if (Atomics.load(ctl, CTL.DONE) === nw) return;
    for (;;) {
      const d = Atomics.load(ctl, CTL.DONE);
      if (d === nw) return;
      Atomics.wait(ctl, CTL.DONE, d, 50);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.ctl, CTL.KERNEL, -1);
    Atomics.add(this.ctl, CTL.GEN, 1);
    Atomics.notify(this.ctl, CTL.GEN);
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}

// The runtime: one shared WebAssembly.Memory, an allocator over it, and the kernel thread pool.
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import v8 from 'node:v8';
import { UsageError, WasmMemoryError } from '../errors.ts';
import { wasmImports } from './imports.ts';
import { KERNEL_NAMES, Kernels, type KernelExports } from './kernels.ts';
import { MAX_THREADS, ThreadPool } from './threads.ts';

export type { Q8Weight } from './kernels.ts';

const PAGE_BYTES = 65536;
const MAX_PAGES = 65536;
const MAX_BYTES = MAX_PAGES * PAGE_BYTES;
const MIN_BLOCK_BYTES = 64;
/** Per-thread scratch the kernels use for score chunks. */
const THREAD_SCRATCH_BYTES = 64 * 1024;

const alignUp = (v: number, a: number): number => Math.ceil(v / a) * a;
const mib = (b: number): string => `${(b / 2 ** 20).toFixed(0)} MiB`;

/**
 * The two builds of the kernels: `plain` uses WebAssembly SIMD only; `relaxed` also uses relaxed
 * SIMD (f32x4.relaxed_madd, one fused multiply-add per lane where the CPU has FMA). The relaxed
 * build's floats differ from the plain build's by rounding; both are tested to give the same tokens.
 * `auto` takes relaxed when this engine can compile it (Node 22 and later by default; Node 20 after
 * enabling V8's --experimental-wasm-relaxed-simd, which is done here before the first compile) and
 * plain otherwise. The ROCKETKV_KERNELS environment variable (auto, plain, relaxed) sets the default.
 */
export type KernelBuild = 'plain' | 'relaxed';
export const KERNEL_BUILDS = ['auto', 'plain', 'relaxed'] as const;
export type KernelBuildChoice = (typeof KERNEL_BUILDS)[number];

export interface RuntimeOptions {
  threads?: number;
  /** Which build of the kernels to run (default: ROCKETKV_KERNELS, else auto). */
  kernels?: KernelBuildChoice;
}

const BUILD_FILES: Record<KernelBuild, string> = { plain: 'kernels.wasm', relaxed: 'kernels-relaxed.wasm' };

async function readBuild(build: KernelBuild): Promise<Uint8Array<ArrayBuffer>> {
  // build/ sits two levels above both src/runtime/ and dist/runtime/.
  try {
    return await readFile(new URL(`../../build/${BUILD_FILES[build]}`, import.meta.url));
  } catch (e) {
    throw new Error(`cannot read build/${BUILD_FILES[build]} (${String(e)}); run \`npm run build:kernels\``);
  }
}

let relaxedSupport: Promise<boolean> | undefined;
/** Whether this engine compiles the relaxed build, enabling Node 20's flag for it on first use; asked once per process. */
function supportsRelaxed(): Promise<boolean> {
  relaxedSupport ??= readBuild('relaxed').then((bytes) => {
    if (WebAssembly.validate(bytes)) return true;
    try {
      v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
    } catch {
      // An engine without the flag simply stays on the plain build.
    }
    return WebAssembly.validate(bytes);
  });
  return relaxedSupport;
}

export function defaultKernelChoice(): KernelBuildChoice {
  const env = process.env.ROCKETKV_KERNELS;
  if (env === undefined || env === '') return 'auto';
  if (!(KERNEL_BUILDS as readonly string[]).includes(env)) {
    throw new UsageError(`ROCKETKV_KERNELS must be one of ${KERNEL_BUILDS.join(', ')}, got ${JSON.stringify(env)}`);
  }
  return env as KernelBuildChoice;
}

/** One compiled module per build, shared by every runtime of the process (a failed one is retried). */
const modules = new Map<KernelBuild, Promise<WebAssembly.Module>>();
function compiled(build: KernelBuild): Promise<WebAssembly.Module> {
  let p = modules.get(build);
  if (p === undefined) {
    p = readBuild(build).then((bytes) => WebAssembly.compile(bytes));
    modules.set(build, p);
    p.catch(() => modules.delete(build));
  }
  return p;
}

async function loadModule(choice: KernelBuildChoice): Promise<{ build: KernelBuild; module: WebAssembly.Module }> {
  if (choice !== 'plain') {
    if (await supportsRelaxed()) return { build: 'relaxed', module: await compiled('relaxed') };
    if (choice === 'relaxed') {
      throw new UsageError(`the relaxed-SIMD kernels do not compile on this engine (Node ${process.versions.node}); use kernels "plain" or "auto"`);
    }
  }
  return { build: 'plain', module: await compiled('plain') };
}

export class Runtime {
  readonly memory: WebAssembly.Memory;
  readonly threads: number;
  /** Which build of the kernels this runtime runs. */
  readonly kernelBuild: KernelBuild;
  readonly k: Kernels;
  /** Main-thread instance exports; kernels.ts calls these directly. */
  readonly exports: KernelExports;
  private pool: ThreadPool | undefined;
  private top: number;
  private readonly sizes = new Map<number, number>();
  /** Free blocks sorted by address: parallel arrays of start and size. */
  private freeStart: number[] = [];
  private freeSize: number[] = [];
  private inUse = 0;
  private peak = 0;
  private arena = 0;
  private arenaBytes = 0;

  private constructor(memory: WebAssembly.Memory, exports: KernelExports, threads: number, heapStart: number, build: KernelBuild) {
    this.memory = memory;
    this.kernelBuild = build;
    this.exports = exports;
    this.threads = threads;
    this.top = heapStart;
    this.k = new Kernels(this);
  }

  static async create(opts: RuntimeOptions = {}): Promise<Runtime> {
    const threads = opts.threads ?? Math.min(os.availableParallelism(), MAX_THREADS);
    if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
      throw new UsageError(`threads must be an integer from 1 to ${MAX_THREADS}, got ${threads}`);
    }
    const choice = opts.kernels ?? defaultKernelChoice();
    if (!(KERNEL_BUILDS as readonly string[]).includes(choice)) {
      throw new UsageError(`kernels must be one of ${KERNEL_BUILDS.join(', ')}, got ${JSON.stringify(choice)}`);
    }
    const { build, module } = await loadModule(choice);
    const memory = new WebAssembly.Memory({ initial: 64, maximum: MAX_PAGES, shared: true });
    const instance = await WebAssembly.instantiate(module, wasmImports(memory));
    const exports = instance.exports as unknown as KernelExports;
    const rt = new Runtime(memory, exports, threads, alignUp(Math.max(exports.heapBase(), 64), 64), build);
    const scratch: number[] = [];
    for (let t = 0; t < threads; t++) scratch.push(rt.alloc(THREAD_SCRATCH_BYTES));
    exports.setThreadScratch(scratch[0], THREAD_SCRATCH_BYTES);
    if (threads > 1) {
      rt.pool = await ThreadPool.start(threads, module, memory, KERNEL_NAMES, (t) => ({ ptr: scratch[t], bytes: THREAD_SCRATCH_BYTES }));
    }
    return rt;
  }

  /** Parallel-for used by kernels.ts; runs on the calling thread alone when there is no pool. */
  parallel(kernel: number, self: (...a: number[]) => number | void, args: readonly number[], n: number, grain: number): number {
    if (n <= 0) return 0;
    if (this.pool === undefined) return Number(self(...args, 0, n) ?? 0);
    return this.pool.run(kernel, self as (...a: number[]) => number | undefined, args, n, grain);
  }

  alloc(bytes: number, align = 64): number {
    if (!(bytes >= 0) || !Number.isFinite(bytes)) throw new RangeError(`alloc: invalid size ${bytes}`);
    const a = Math.max(MIN_BLOCK_BYTES, alignUp(align, MIN_BLOCK_BYTES));
    const size = Math.max(MIN_BLOCK_BYTES, alignUp(bytes, MIN_BLOCK_BYTES));
    let ptr = -1;
    for (let i = 0; i < this.freeStart.length; i++) {
      const s = this.freeStart[i];
      const e = s + this.freeSize[i];
      const p = alignUp(s, a);
      if (p + size > e) continue;
      this.removeFree(i);
      if (p > s) this.addFree(s, p - s);
      if (p + size < e) this.addFree(p + size, e - p - size);
      ptr = p;
      break;
    }
    if (ptr < 0) {
      ptr = alignUp(this.top, a);
      const end = ptr + size;
      if (end > MAX_BYTES) {
        throw new WasmMemoryError(
          `out of WebAssembly memory: ${mib(bytes)} requested with ${mib(this.inUse)} in use, past wasm32's 4 GiB limit; use int8 weights, a smaller model or a shorter context`,
        );
      }
      this.ensureBytes(end);
      if (ptr > this.top) this.addFree(this.top, ptr - this.top);
      this.top = end;
    }
    this.sizes.set(ptr, size);
    this.inUse += size;
    if (this.inUse > this.peak) this.peak = this.inUse;
    return ptr;
  }

  free(ptr: number): void {
    const size = this.sizes.get(ptr);
    if (size === undefined) throw new RangeError(`free: ${ptr} is not an allocated pointer`);
    this.sizes.delete(ptr);
    this.inUse -= size;
    this.addFree(ptr, size);
    // Give the last block back to the bump pointer so the heap tail stays contiguous.
    const last = this.freeStart.length - 1;
    if (last >= 0 && this.freeStart[last] + this.freeSize[last] === this.top) {
      this.top = this.freeStart[last];
      this.removeFree(last);
    }
  }

  /**
   * Scratch for per-step work on the calling thread (decode-time selection): one buffer of at least
   * `bytes`, kept and reused from call to call (grown when a call needs more), so a step allocates
   * nothing. Its contents last until the next call; freed with the runtime.
   */
  stepArena(bytes: number): number {
    if (bytes > this.arenaBytes) {
      if (this.arena !== 0) this.free(this.arena);
      this.arena = 0;
      const size = Math.max(bytes, this.arenaBytes * 2, 64 * 1024);
      this.arena = this.alloc(size, 64);
      this.arenaBytes = size;
    }
    return this.arena;
  }

  bytesInUse(): number { return this.inUse; }
  /** Bytes wasm32 can still hand out: its 4 GiB less what is allocated. */
  bytesLeft(): number { return MAX_BYTES - this.inUse; }
  peakBytes(): number { return this.peak; }

  f32(ptr: number, n: number): Float32Array { return new Float32Array(this.memory.buffer, ptr, n); }
  i32(ptr: number, n: number): Int32Array { return new Int32Array(this.memory.buffer, ptr, n); }
  i8(ptr: number, n: number): Int8Array { return new Int8Array(this.memory.buffer, ptr, n); }
  u8(ptr: number, n: number): Uint8Array { return new Uint8Array(this.memory.buffer, ptr, n); }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    if (pool !== undefined) await pool.close();
  }

  private ensureBytes(end: number): void {
    const have = this.memory.buffer.byteLength;
    if (end <= have) return;
    // Grow geometrically (capped) so many small allocations don't each grow memory.
    const want = Math.min(MAX_BYTES, Math.max(end, Math.min(have * 1.25, have + 512 * 2 ** 20)));
    const pages = Math.ceil(want / PAGE_BYTES) - have / PAGE_BYTES;
    try {
      this.memory.grow(pages);
    } catch (e) {
      throw new WasmMemoryError(
        `cannot grow WebAssembly memory to ${mib(want)} (${String(e)}); free memory or use a smaller model/context`,
      );
    }
  }

  private addFree(start: number, size: number): void {
    const fs = this.freeStart;
    let lo = 0, hi = fs.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (fs[mid] < start) lo = mid + 1; else hi = mid; }
    fs.splice(lo, 0, start);
    this.freeSize.splice(lo, 0, size);
    // Coalesce with the next block, then with the previous one.
    if (lo + 1 < fs.length && start + size === fs[lo + 1]) {
      this.freeSize[lo] += this.freeSize[lo + 1];
      this.removeFree(lo + 1);
    }
    if (lo > 0 && fs[lo - 1] + this.freeSize[lo - 1] === start) {
      this.freeSize[lo - 1] += this.freeSize[lo];
      this.removeFree(lo);
    }
  }

  private removeFree(i: number): void {
    this.freeStart.splice(i, 1);
    this.freeSize.splice(i, 1);
  }
}

// Typed wrappers over the AssemblyScript kernels: argument checks, thread split, scratch.
import { UsageError } from '../errors.ts';
import { JOB_FIELDS, JOB_KEYS, JOB_ROWS } from '../kv/job.ts';
import { Q8_MANY_BIAS, Q8_MANY_FIELDS, Q8_MANY_FIRST, Q8_MANY_N, Q8_MANY_OUT, Q8_MANY_QS, Q8_MANY_SCALES } from './q8-many.ts';

/** Names of the parallel kernels, in the order workers index them. */
export const KERNEL_NAMES = [
  'gemmF32', 'gemvF32', 'sumF32', 'quantizeQ8Rows', 'quantizeActQ8', 'gemmQ8', 'gemmQ8Many',
  'rmsnorm', 'rope', 'siluMul', 'add', 'softmax', 'attnCausal', 'attendPaged', 'attendPagedPart', 'attendMerge',
  'hybridSelectJobs',
] as const;
type KernelName = (typeof KERNEL_NAMES)[number];
const KID = Object.fromEntries(KERNEL_NAMES.map((n, i) => [n, i])) as Record<KernelName, number>;

/** Exports of build/kernels.wasm (pointers are byte offsets; the last two args are start, end). */
export interface KernelExports {
  heapBase(): number;
  setThreadScratch(ptr: number, bytes: number): void;
  gemmF32(out: number, x: number, w: number, bias: number, M: number, K: number, N: number, start: number, end: number): void;
  gemvF32(out: number, x: number, w: number, bias: number, K: number, start: number, end: number): void;
  sumF32(ptr: number, start: number, end: number): number;
  quantizeQ8Rows(qs: number, scales: number, src: number, K: number, row0: number, start: number, end: number): void;
  quantizeActQ8(xq: number, xs: number, x: number, K: number, start: number, end: number): void;
  /** start, end: groups of 8 weight rows. */
  gemmQ8(out: number, xq: number, xs: number, wq: number, ws: number, bias: number, M: number, K: number, N: number, start: number, end: number): void;
  gemmQ8Many(table: number, count: number, xq: number, xs: number, M: number, K: number, start: number, end: number): void;
  rmsnorm(out: number, x: number, weight: number, D: number, eps: number, start: number, end: number): void;
  rope(x: number, nHeads: number, headDim: number, pos: number, invFreq: number, start: number, end: number): void;
  siluMul(out: number, gate: number, up: number, start: number, end: number): void;
  add(out: number, a: number, b: number, start: number, end: number): void;
  softmax(x: number, cols: number, start: number, end: number): void;
  attnCausal(out: number, q: number, k: number, v: number, T: number, S: number, Hq: number, Hkv: number, d: number, scale: number, start: number, end: number): void;
  attendPaged(jobs: number, pool: number, blockSlots: number, d: number, G: number, rowStride: number, scale: number, start: number, end: number): void;
  attendPagedPart(jobs: number, pool: number, blockSlots: number, d: number, G: number, scale: number, parts: number, partial: number, start: number, end: number): void;
  attendMerge(jobs: number, d: number, G: number, parts: number, partial: number, start: number, end: number): void;
  /** Calling thread only: register-only throughput loops (assembly/peak.ts). */
  peakMadd(n: number, seed: number): number;
  peakMaddMacs(): number;
  peakDot(n: number, seed: number): number;
  peakDotMacs(): number;
  peakDotRelaxed(n: number, seed: number): number;
  peakDotRelaxedMacs(): number;
  /** Calling thread only: RocketKV stage-2 page scores (assembly/select.ts). */
  pageSoftmaxSum(out: number, sub: number, qc: number, temp: number, tmp: number, pages: number, r: number, G: number, pageSize: number, lastCount: number): void;
  /** Calling thread only: RocketKV stage-2 choice for one head; slot count, or -1 for every slot (assembly/select.ts). */
  hybridSelect(slots: number, q: number, min: number, max: number, ws: number, G: number, d: number, pages: number, P: number, n: number, r: number, topk: number, localWindow: number): number;
  hybridSelectJobs(table: number, start: number, end: number): void;
  /** Bytes of hybridSelect's work space. */
  hybridSelectScratch(d: number, pages: number, r: number, G: number): number;
  /** Calling thread only: Quest's page choice for one head, `sets` slot lists of up to n (assembly/select.ts). */
  questSelect(slots: number, counts: number, q: number, min: number, max: number, ws: number, G: number, d: number, pages: number, P: number, n: number, want: number, sets: number): void;
  /** Bytes of questSelect's work space. */
  questSelectScratch(pages: number): number;
}

/** What the wrappers need from the runtime (implemented by Runtime in wasm.ts). */
export interface KernelHost {
  readonly exports: KernelExports;
  readonly threads: number;
  parallel(kernel: number, self: (...a: number[]) => number | void, args: readonly number[], n: number, grain: number): number;
  alloc(bytes: number, align?: number): number;
  free(ptr: number): void;
  i32(ptr: number, n: number): Int32Array;
  u8(ptr: number, n: number): Uint8Array;
}

/**
 * Int8 weights, block 32 along K (scale = max|w|/127), packed for the kernels in groups of 8 rows
 * (rows past N are zero): group g holds rows 8g..8g+7 as K/2 pairs of 16 bytes, pair p holding
 * (row 8g+r, k = 2p) and (row 8g+r, k = 2p+1) at bytes 2r and 2r+1; its scales are 8 f32 per block,
 * one per row. q8ValueIndex and q8ScaleIndex locate one value.
 */
export interface Q8Weight { qs: number; scales: number; N: number; K: number }

/** Rows per group of a packed int8 weight. */
export const Q8_GROUP_ROWS = 8;
/** Groups of an int8 weight with N rows. */
export function q8Groups(N: number): number { return Math.ceil(N / Q8_GROUP_ROWS); }
/** Bytes of an int8 weight [N,K] (values and scales, padded to whole groups). */
export function q8Bytes(N: number, K: number): number { return q8Groups(N) * Q8_GROUP_ROWS * (K + K / 8); }
/** Byte index of value (n, k) in Q8Weight.qs. */
export function q8ValueIndex(K: number, n: number, k: number): number { return (n >> 3) * 8 * K + (k >> 1) * 16 + (n & 7) * 2 + (k & 1); }
/** f32 index of block b's scale of row n in Q8Weight.scales. */
export function q8ScaleIndex(K: number, n: number, b: number): number { return (n >> 3) * (K / 4) + b * 8 + (n & 7); }

/**
 * Activation rows quantized per 32-block along K: xq i16 [M*K] (values within ±127), xs f32 [M*K/32].
 * Lives in one runtime scratch buffer: the next quantizeAct or matmulQ8 call overwrites it, after which
 * matmulQ8Quantized rejects it (generation check).
 */
export interface QuantizedAct { readonly xq: number; readonly xs: number; readonly M: number; readonly K: number; readonly generation: number }

/** Below this much work (about one multiply-add per unit) a call runs on the calling thread only. */
const PARALLEL_MIN_WORK = 32768;
/** Decode attention is split by key range only when each range keeps at least this many keys. */
export const MIN_KEYS_PER_PART = 256;

export class Kernels {
  private readonly ex: KernelExports;
  private actScratch = 0;
  private manyTable = 0;
  private manyTableCount = 0;
  private partial = 0;
  private partialBytes = 0;
  private actScratchBytes = 0;
  private actGeneration = 0;

  constructor(private readonly host: KernelHost) {
    this.ex = host.exports;
  }

  /** Splits [0, n) across threads when the total work is worth a dispatch. */
  private run(name: KernelName, args: number[], n: number, grain: number, workPerItem: number): number {
    const fn = this.ex[name] as (...a: number[]) => number | void;
    if (this.host.threads === 1 || n * workPerItem < PARALLEL_MIN_WORK || n <= grain) {
      return n > 0 ? Number(fn(...args, 0, n) ?? 0) : 0;
    }
    return this.host.parallel(KID[name], fn, args, n, grain);
  }

  /** out[M,N] = x[M,K] · w[N,K]^T (+ bias[N] when bias != 0). */
  matmul(out: number, x: number, w: number, bias: number, M: number, K: number, N: number): void {
    if (M === 1) this.run('gemvF32', [out, x, w, bias, K], N, 4, K);
    else this.run('gemmF32', [out, x, w, bias, M, K, N], N, 4, M * K);
  }

  /** Quantizes f32 weights [N,K] to Q8 blocks of 32 along K (allocates qs and scales). */
  quantizeQ8(src: number, N: number, K: number): Q8Weight {
    const w = this.allocQ8(N, K, 'quantizeQ8');
    this.quantizeQ8Slice(w, src, 0, N);
    return w;
  }

  /** Room for int8 weights [N,K] (qs and scales, contents undefined), filled by quantizeQ8Slice. */
  allocQ8(N: number, K: number, caller = 'allocQ8'): Q8Weight {
    if (K % 32 !== 0 || K <= 0 || N <= 0) {
      throw new UsageError(`${caller}: K must be a positive multiple of 32 (got N=${N}, K=${K}); keep such weights in f32`);
    }
    const G = q8Groups(N);
    const R = Q8_GROUP_ROWS;
    const w = { qs: this.host.alloc(G * R * K), scales: this.host.alloc((G * R * K) / 8), N, K };
    if (N % R !== 0) {
      // The last group's padding rows stay zero (the products read them).
      const g = G - 1;
      this.host.u8(w.qs + g * R * K, R * K).fill(0);
      this.host.u8(w.scales + (g * R * K) / 8, (R * K) / 8).fill(0);
    }
    return w;
  }

  /** Quantizes f32 rows src [rows, K] into rows [row0, row0 + rows) of w. */
  quantizeQ8Slice(w: Q8Weight, src: number, row0: number, rows: number): void {
    if (!Number.isInteger(row0) || !Number.isInteger(rows) || row0 < 0 || rows < 0 || row0 + rows > w.N) {
      throw new UsageError(`quantizeQ8Slice: rows ${row0}..${row0 + rows} outside the weight's ${w.N}`);
    }
    const K = w.K;
    this.run('quantizeQ8Rows', [w.qs, w.scales, src, K, row0], rows, 1, K * 4);
  }

  /**
   * Quantizes activation rows x [M,K] into runtime scratch, for one or more matmulQ8Quantized calls
   * on the same input (e.g. q, k, v projections). K must be a multiple of 32. Overwrites the previous one.
   */
  quantizeAct(x: number, M: number, K: number): QuantizedAct {
    if (K % 32 !== 0 || K <= 0 || M <= 0) {
      throw new UsageError(`quantizeAct: need M > 0 and K a positive multiple of 32 (got M=${M}, K=${K})`);
    }
    const xqBytes = M * K * 2;
    const need = xqBytes + (M * K) / 8;
    if (need > this.actScratchBytes) {
      if (this.actScratch !== 0) this.host.free(this.actScratch);
      this.actScratch = this.host.alloc(need);
      this.actScratchBytes = need;
    }
    const xq = this.actScratch;
    const xs = xq + xqBytes;
    this.run('quantizeActQ8', [xq, xs, x, K], M, 1, K * 4);
    return { xq, xs, M, K, generation: ++this.actGeneration };
  }

  /**
   * out[M,N] = act · w^T (+ bias) with act from quantizeAct (same K as w, M rows used). Each row's
   * outputs are the same bits whatever M is (gemmQ8 sums every output's blocks in one order).
   */
  matmulQ8Quantized(out: number, act: QuantizedAct, w: Q8Weight, bias: number, M: number): void {
    const { K, N } = w;
    if (act.K !== K || M > act.M || M <= 0) {
      throw new UsageError(`matmulQ8Quantized: activation is ${act.M}x${act.K} but the call needs ${M}x${K}`);
    }
    if (act.generation !== this.actGeneration) {
      throw new UsageError('matmulQ8Quantized: activation was overwritten by a later quantizeAct/matmulQ8; quantize it again');
    }
    // Items are groups of 8 weight rows.
    this.run('gemmQ8', [out, act.xq, act.xs, w.qs, w.scales, bias, M, K, N], q8Groups(N), 1, Q8_GROUP_ROWS * M * K);
  }

  /**
   * matmulQ8Quantized for several matrices of the same K on one quantized activation (outs[i] =
   * act · ws[i]^T + biases[i]), as one split across threads over all their groups: every output
   * is the same bits as from its own matmulQ8Quantized.
   */
  matmulQ8QuantizedMany(outs: readonly number[], act: QuantizedAct, ws: readonly Q8Weight[], biases: readonly number[], M: number): void {
    const n = ws.length;
    if (n === 0) return;
    const K = ws[0]!.K;
    if (outs.length !== n || biases.length !== n || ws.some((w) => w.K !== K)) {
      throw new UsageError(`matmulQ8QuantizedMany: need as many outputs and biases as matrices (${outs.length}, ${biases.length}, ${n}), all with K = ${K}`);
    }
    if (act.K !== K || M > act.M || M <= 0) {
      throw new UsageError(`matmulQ8QuantizedMany: activation is ${act.M}x${act.K} but the call needs ${M}x${K}`);
    }
    if (act.generation !== this.actGeneration) {
      throw new UsageError('matmulQ8QuantizedMany: activation was overwritten by a later quantizeAct/matmulQ8; quantize it again');
    }
    if (n > this.manyTableCount) {
      if (this.manyTable !== 0) this.host.free(this.manyTable);
      this.manyTable = this.host.alloc(n * Q8_MANY_FIELDS * 4, 64);
      this.manyTableCount = n;
    }
    const t = this.host.i32(this.manyTable, n * Q8_MANY_FIELDS);
    let groups = 0;
    for (let i = 0; i < n; i++) {
      const w = ws[i]!;
      const r = i * Q8_MANY_FIELDS;
      t[r + Q8_MANY_OUT] = outs[i]!;
      t[r + Q8_MANY_QS] = w.qs;
      t[r + Q8_MANY_SCALES] = w.scales;
      t[r + Q8_MANY_BIAS] = biases[i]!;
      t[r + Q8_MANY_N] = w.N;
      t[r + Q8_MANY_FIRST] = groups;
      groups += q8Groups(w.N);
    }
    this.run('gemmQ8Many', [this.manyTable, n, act.xq, act.xs, M, K], groups, 1, Q8_GROUP_ROWS * M * K);
  }

  /** matmul with int8 weights; activation rows are quantized per 32-block into runtime scratch. */
  matmulQ8(out: number, x: number, w: Q8Weight, bias: number, M: number): void {
    this.matmulQ8Quantized(out, this.quantizeAct(x, M, w.K), w, bias, M);
  }

  /** out = x / sqrt(mean(x^2) + eps) * weight per row of D; out may equal x. */
  rmsnorm(out: number, x: number, weight: number, M: number, D: number, eps: number): void {
    this.run('rmsnorm', [out, x, weight, D, eps], M, 1, D * 2);
  }

  /** In-place rotate-half RoPE on x [M, nHeads*headDim] at positions pos (i32 [M]). */
  rope(x: number, M: number, nHeads: number, headDim: number, posPtr: number, invFreqPtr: number): void {
    this.run('rope', [x, nHeads, headDim, posPtr, invFreqPtr], M, 1, nHeads * headDim * 2 + headDim * 20);
  }

  /** out = gate * sigmoid(gate) * up over n floats. */
  siluMul(out: number, gate: number, up: number, n: number): void {
    this.run('siluMul', [out, gate, up], n, 16, 8);
  }

  /** out = a + b over n floats. */
  add(out: number, a: number, b: number, n: number): void {
    this.run('add', [out, a, b], n, 16, 1);
  }

  /** Row-wise softmax in place on x [rows, cols]. */
  softmax(x: number, rows: number, cols: number): void {
    this.run('softmax', [x, cols], rows, 1, cols * 8);
  }

  /** Dense causal GQA attention: q,out [T,Hq,d]; k,v [S,Hkv,d]; row t sees keys 0..S-T+t. */
  attentionCausal(out: number, q: number, k: number, v: number, T: number, S: number, Hq: number, Hkv: number, d: number, scale: number): void {
    if (Hq % Hkv !== 0) throw new UsageError(`attentionCausal: Hq=${Hq} is not a multiple of Hkv=${Hkv}`);
    if (S < T) throw new UsageError(`attentionCausal: S=${S} keys is fewer than T=${T} queries`);
    // Items are (row, KV head); grain 2*Hkv keeps each (short row, long row) pair together.
    this.run('attnCausal', [out, q, k, v, T, S, Hq, Hkv, d, scale], T * Hkv, 2 * Hkv, S * d * 2 * (Hq / Hkv));
  }

  /**
   * Paged attention over nJobs job records (8 i32 each); parallel over jobs. When every job is one
   * row (a decode step) and there are fewer jobs than threads, each job's keys are split into
   * ranges run on different threads and merged (attendPagedPart, attendMerge), so long contexts
   * use every thread however few KV heads there are. `split` = false keeps one range per job; a
   * number sets the ranges per job.
   * The split sums in another order, so such a step's logits differ from an unsplit run (one with
   * as many jobs as threads, or fewer threads) by float rounding: results are reproducible at a
   * given thread count, not across thread counts, once a step has fewer jobs than half the threads.
   */
  /**
   * hybridSelect for nJobs stored heads (records of HYBRID_JOB_FIELDS i32 at table, src/compress/hybrid-job.ts; see
   * assembly/select.ts hybridSelectJobs), heads spread over threads; each writes its count into
   * its record. `workPerJob` sizes the split (about pages x group x channels).
   */
  hybridSelectJobs(table: number, nJobs: number, workPerJob: number): void {
    this.run('hybridSelectJobs', [table], nJobs, 1, workPerJob);
  }

  attendPaged(jobsPtr: number, nJobs: number, poolPtr: number, blockSlots: number, d: number, G: number, rowStride: number, scale: number, split: boolean | number = true): void {
    const parts = typeof split === 'number' ? split : split ? this.decodeKeyParts(jobsPtr, nJobs) : 1;
    if (!Number.isInteger(parts) || parts < 1) throw new UsageError(`attendPaged: key ranges per job must be a positive integer, got ${parts}`);
    if (parts === 1) {
      this.run('attendPaged', [jobsPtr, poolPtr, blockSlots, d, G, rowStride, scale], nJobs, 1, PARALLEL_MIN_WORK);
      return;
    }
    const bytes = nJobs * parts * (G * d + 2 * G) * 4;
    if (bytes > this.partialBytes) {
      if (this.partial !== 0) this.host.free(this.partial);
      this.partial = this.host.alloc(bytes, 64);
      this.partialBytes = bytes;
    }
    this.run('attendPagedPart', [jobsPtr, poolPtr, blockSlots, d, G, scale, parts, this.partial], nJobs * parts, 1, PARALLEL_MIN_WORK);
    this.run('attendMerge', [jobsPtr, d, G, parts, this.partial], nJobs, 1, G * d * parts);
  }

  /**
   * Key ranges per job for a split decode step: 1 when the jobs are not all single rows or too
   * short, or already as many as the threads. The forward pass asks it per sequence.
   */
  decodeKeyParts(jobsPtr: number, nJobs: number): number {
    const threads = this.host.threads;
    if (threads <= 1 || nJobs === 0 || nJobs >= threads) return 1;
    const f = this.host.i32(jobsPtr, nJobs * JOB_FIELDS);
    let shortest = Infinity;
    for (let j = 0; j < nJobs; j++) {
      if (f[j * JOB_FIELDS + JOB_ROWS] !== 1) return 1;
      shortest = Math.min(shortest, f[j * JOB_FIELDS + JOB_KEYS]!);
    }
    // Whole multiples of the jobs only: threads / nJobs ranges each keep every item on its own thread.
    return Math.max(1, Math.min(Math.floor(threads / nJobs), Math.floor(shortest / MIN_KEYS_PER_PART)));
  }

  /** SIMD sum of n floats at ptr, split across threads (bandwidth yardstick). */
  sumF32(ptr: number, n: number): number {
    return this.run('sumF32', [ptr], n, 16, 1);
  }
}

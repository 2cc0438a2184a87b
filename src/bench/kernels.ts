// Kernel benchmark: f32 GEMM throughput, int8-weight GEMM multiply-adds per second against f32
// GEMM at an MLP shape (timed alternately), the build's instruction
// peaks (f32x4 multiply-add, the int8 dot gemmQ8 uses) that bound what an int8 GEMM can gain, f32
// matrix-vector bandwidth against a SIMD sum over the same bytes, and int8 matrix-vector rows/s.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Runtime } from '../runtime/wasm.ts';

export interface KernelBenchReport {
  threads: number;
  gemm: { M: number; K: number; N: number; gflopsBest: number; gflopsMedian: number };
  kernels: 'plain' | 'relaxed';
  /** The int8-weight GEMM (gemmQ8: packed weights, integer block dots) against the f32 GEMM. */
  gemmQ8: { M: number; K: number; N: number; f32GmacBest: number; q8GmacBest: number; ratioBest: number; ratioMedian: number };
  /** One thread, registers only: multiply-adds per second of the f32x4 multiply-add and of gemmQ8's int8 dot (and the relaxed build's i8 dot, unused). */
  peak: { maddGmac: number; dotGmac: number; ratio: number; relaxedDotGmac?: number };
  matvec: {
    K: number; N: number; matrixBytes: number; l3Bytes: number;
    f32GBps: number; f32RowsPerS: number; sumGBps: number; ratioToSum: number;
    q8RowsPerS: number; q8GBps: number; q8RatioToF32: number;
  };
  targets: { name: string; value: number; threshold: number; pass: boolean }[];
}

export const GEMM_TARGET_GFLOPS = 30;
export const MATVEC_TARGET_RATIO = 0.75;
export const Q8_TARGET_RATIO = 2;
export const Q8_GEMM_TARGET_RATIO = 2;

/** L3 size from sysfs (e.g. "32768K"), 32 MiB when unknown. */
export function l3CacheBytes(): number {
  try {
    const s = readFileSync('/sys/devices/system/cpu/cpu0/cache/index3/size', 'utf8').trim();
    const m = /^(\d+)\s*([KMG]?)/i.exec(s);
    if (m) return Number(m[1]) * ({ '': 1, K: 1024, M: 2 ** 20, G: 2 ** 30 } as Record<string, number>)[m[2].toUpperCase()];
  } catch { /* no sysfs: use the fallback */ }
  return 32 * 2 ** 20;
}

/** Seconds per call of fn: best and median of `reps` timings, each over `inner` calls. */
function timeIt(fn: () => void, reps: number, inner: number): { best: number; median: number } {
  fn();
  const t: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (let i = 0; i < inner; i++) fn();
    t.push((performance.now() - t0) / 1000 / inner);
  }
  t.sort((a, b) => a - b);
  return { best: t[0], median: t[Math.floor(t.length / 2)] };
}

function fillRandom(v: Float32Array, seed: number): void {
  let s = seed >>> 0;
  for (let i = 0; i < v.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = s / 2 ** 32 - 0.5;
  }
}

export async function benchKernels(opts: { threads: number; log: (line: string) => void }): Promise<KernelBenchReport> {
  const { threads, log } = opts;
  const rt = await Runtime.create({ threads });
  try {
    // f32 GEMM at a prefill shape (Qwen2.5-0.5B hidden size).
    const M = 512, K = 896, N = 896;
    const x = rt.alloc(M * K * 4), w = rt.alloc(N * K * 4), out = rt.alloc(M * N * 4);
    fillRandom(rt.f32(x, M * K), 1);
    fillRandom(rt.f32(w, N * K), 2);
    const g = timeIt(() => rt.k.matmul(out, x, w, 0, M, K, N), 7, 3);
    const flop = 2 * M * K * N;
    const gemm = { M, K, N, gflopsBest: flop / g.best / 1e9, gflopsMedian: flop / g.median / 1e9 };
    log(`f32 GEMM ${M}x${K}x${N}, ${threads} threads: best ${gemm.gflopsBest.toFixed(1)} GFLOP/s, median ${gemm.gflopsMedian.toFixed(1)} GFLOP/s`);
    rt.free(x); rt.free(w); rt.free(out);

    // Int8 GEMM against f32 GEMM at an MLP up-projection shape (Qwen2.5-0.5B: 896 -> 4864), the two
    // timed alternately so a shared host's drift hits both; the ratio is of per-rep times.
    const gq = { M: 512, K: 896, N: 4864 };
    const qx = rt.alloc(gq.M * gq.K * 4), qw = rt.alloc(gq.N * gq.K * 4), qo = rt.alloc(gq.M * gq.N * 4);
    fillRandom(rt.f32(qx, gq.M * gq.K), 5);
    fillRandom(rt.f32(qw, gq.N * gq.K), 6);
    const qwq = rt.k.quantizeQ8(qw, gq.N, gq.K);
    const tf: number[] = [], tq: number[] = [];
    const act = rt.k.quantizeAct(qx, gq.M, gq.K);
    rt.k.matmul(qo, qx, qw, 0, gq.M, gq.K, gq.N);
    rt.k.matmulQ8Quantized(qo, act, qwq, 0, gq.M);
    for (let r = 0; r < 7; r++) {
      let t0 = performance.now();
      rt.k.matmul(qo, qx, qw, 0, gq.M, gq.K, gq.N);
      tf.push(performance.now() - t0);
      t0 = performance.now();
      rt.k.matmulQ8Quantized(qo, act, qwq, 0, gq.M);
      tq.push(performance.now() - t0);
    }
    const medianOf = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const macs = gq.M * gq.K * gq.N;
    const gemmQ8 = {
      ...gq,
      f32GmacBest: macs / Math.min(...tf) / 1e6,
      q8GmacBest: macs / Math.min(...tq) / 1e6,
      ratioBest: Math.min(...tf) / Math.min(...tq),
      ratioMedian: medianOf(tf.map((t, i) => t / tq[i]!)),
    };
    log(`int8 GEMM ${gq.M}x${gq.K}x${gq.N}, ${threads} threads, ${rt.kernelBuild} kernels: packed weights, integer block dots (gemmQ8) best ${gemmQ8.q8GmacBest.toFixed(1)} GMAC/s; f32 GEMM best ${gemmQ8.f32GmacBest.toFixed(1)} GMAC/s; over f32 (median of alternate runs) ${gemmQ8.ratioMedian.toFixed(2)}`);

    // Registers only, one thread: the most any GEMM of this build can do per instruction kind.
    const PEAK_ITERS = 1e7;
    const ex = rt.exports;
    const tm = timeIt(() => ex.peakMadd(PEAK_ITERS, 0.5), 5, 1);
    const td = timeIt(() => ex.peakDot(PEAK_ITERS, 5), 5, 1);
    const relaxedMacs = ex.peakDotRelaxedMacs();
    const tr = relaxedMacs > 0 ? timeIt(() => ex.peakDotRelaxed(PEAK_ITERS, 5), 5, 1) : undefined;
    const peak = {
      maddGmac: (PEAK_ITERS * ex.peakMaddMacs()) / tm.best / 1e9,
      dotGmac: (PEAK_ITERS * ex.peakDotMacs()) / td.best / 1e9,
      ratio: 0,
      ...(tr ? { relaxedDotGmac: (PEAK_ITERS * relaxedMacs) / tr.best / 1e9 } : {}),
    };
    peak.ratio = peak.dotGmac / peak.maddGmac;
    log(
      `peaks, 1 thread, registers only (${rt.kernelBuild} kernels): f32x4 multiply-add ${peak.maddGmac.toFixed(1)} GMAC/s; ` +
        `gemmQ8's int8 dot (i32x4.dot_i16x8_s + add) ${peak.dotGmac.toFixed(1)} GMAC/s; ratio ${peak.ratio.toFixed(2)}, the most gemmQ8 can gain over the f32 GEMM before block scales and widening` +
        (peak.relaxedDotGmac !== undefined ? `; i32x4.relaxed_dot_i8x16_i7x16_add_s (not used: one operand must fit 7 bits) ${peak.relaxedDotGmac.toFixed(1)} GMAC/s` : ''),
    );
    rt.free(qx); rt.free(qw); rt.free(qo);

    // Matrix-vector on a matrix 4x the L3 so every pass streams from DRAM.
    const l3Bytes = l3CacheBytes();
    const mvK = 2048;
    const mvN = Math.ceil((4 * l3Bytes) / (mvK * 4) / 64) * 64;
    const matrixBytes = mvN * mvK * 4;
    const mw = rt.alloc(matrixBytes), mx = rt.alloc(mvK * 4), mo = rt.alloc(mvN * 4);
    fillRandom(rt.f32(mw, mvN * mvK), 3);
    fillRandom(rt.f32(mx, mvK), 4);
    const reps = 9;
    const sum = timeIt(() => rt.k.sumF32(mw, mvN * mvK), reps, 1);
    const mv = timeIt(() => rt.k.matmul(mo, mx, mw, 0, 1, mvK, mvN), reps, 1);
    const sumGBps = matrixBytes / sum.best / 1e9;
    const f32GBps = matrixBytes / mv.best / 1e9;
    const f32RowsPerS = mvN / mv.best;
    log(`SIMD sum over ${(matrixBytes / 2 ** 20).toFixed(0)} MiB (L3 ${(l3Bytes / 2 ** 20).toFixed(0)} MiB): best ${sumGBps.toFixed(1)} GB/s, median ${(matrixBytes / sum.median / 1e9).toFixed(1)} GB/s`);
    log(`f32 matvec ${mvN}x${mvK}: best ${f32GBps.toFixed(1)} GB/s (${(f32RowsPerS / 1e6).toFixed(2)} M rows/s), median ${(matrixBytes / mv.median / 1e9).toFixed(1)} GB/s; ratio to sum ${(f32GBps / sumGBps).toFixed(2)}`);

    const wq = rt.k.quantizeQ8(mw, mvN, mvK);
    rt.free(mw);
    const q8Bytes = mvN * mvK + (mvN * mvK) / 8;
    const q8 = timeIt(() => rt.k.matmulQ8(mo, mx, wq, 0, 1), reps, 2);
    const q8RowsPerS = mvN / q8.best;
    const q8GBps = q8Bytes / q8.best / 1e9;
    log(`int8 matvec ${mvN}x${mvK}: best ${(q8RowsPerS / 1e6).toFixed(2)} M rows/s (${q8GBps.toFixed(1)} GB/s of weights+scales), median ${(mvN / q8.median / 1e6).toFixed(2)} M rows/s; ratio to f32 ${(q8RowsPerS / f32RowsPerS).toFixed(2)}`);

    const targets = [
      { name: `f32 GEMM GFLOP/s (${threads} threads)`, value: gemm.gflopsBest, threshold: GEMM_TARGET_GFLOPS },
      { name: 'f32 matvec / SIMD sum bandwidth', value: f32GBps / sumGBps, threshold: MATVEC_TARGET_RATIO },
      { name: 'int8 / f32 matvec rows/s', value: q8RowsPerS / f32RowsPerS, threshold: Q8_TARGET_RATIO },
      { name: 'int8 / f32 GEMM multiply-adds/s (median of pairs)', value: gemmQ8.ratioMedian, threshold: Q8_GEMM_TARGET_RATIO },
    ].map((t) => ({ ...t, pass: t.value >= t.threshold }));
    for (const t of targets) log(`${t.pass ? 'PASS' : 'FAIL'} ${t.name}: ${t.value.toFixed(2)} (target >= ${t.threshold})`);
    return {
      threads,
      kernels: rt.kernelBuild,
      gemm,
      gemmQ8,
      peak,
      matvec: {
        K: mvK, N: mvN, matrixBytes, l3Bytes, f32GBps, f32RowsPerS, sumGBps, ratioToSum: f32GBps / sumGBps,
        q8RowsPerS, q8GBps, q8RatioToF32: q8RowsPerS / f32RowsPerS,
      },
      targets,
    };
  } finally {
    await rt.close();
  }
}

// Run directly: `node --import tsx src/bench/kernels.ts [threads]`.
if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const threads = Number(process.argv[2] ?? 2);
  const report = await benchKernels({ threads, log: (line) => console.log(line) });
  process.exitCode = report.targets.every((t) => t.pass) ? 0 : 1;
}

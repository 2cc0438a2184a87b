// Kernel worker: instantiates the shared module on the shared memory and serves dispatches.
import { parentPort, workerData } from 'node:worker_threads';
import { CTL, CTL_TEXT_BYTES, MAX_ARGS, SPIN_POLLS, type WorkerInit } from './threads.ts';
import { wasmImports } from './imports.ts';

const init = workerData as WorkerInit;
const instance = new WebAssembly.Instance(init.module, wasmImports(init.memory));
const exports = instance.exports as Record<string, unknown>;
(exports.setThreadScratch as (p: number, b: number) => void)(init.scratchPtr, init.scratchBytes);
const fns = init.kernelNames.map((name) => exports[name] as (...a: number[]) => number | undefined);

const L = init.layout;
const ctl = new Int32Array(init.control, 0, L.ints);
const argsF64 = new Float64Array(init.control, L.argsByte, MAX_ARGS);
const results = new Float64Array(init.control, L.resultsByte, L.threads);
const text = new Uint8Array(init.control, L.textByte, CTL_TEXT_BYTES);
// One reusable argument array per arity, so a dispatch allocates nothing.
const argArrays: number[][] = [];
for (let i = 0; i <= MAX_ARGS + 2; i++) argArrays.push(new Array<number>(i).fill(0));
const t = init.thread;

// Read the generation before announcing readiness: the first dispatch may follow immediately.
let seen = Atomics.load(ctl, CTL.GEN);
parentPort!.postMessage('ready');
for (;;) {
  let g = Atomics.load(ctl, CTL.GEN);
  for (let i = 0; g === seen && i < SPIN_POLLS; i++) g = Atomics.load(ctl, CTL.GEN);
  while (g === seen) {
    Atomics.wait(ctl, CTL.GEN, seen);
    g = Atomics.load(ctl, CTL.GEN);
  }
  seen = g;
  const k = ctl[CTL.KERNEL];
  if (k < 0) break;
  const nargs = ctl[CTL.NARGS];
  const a = argArrays[nargs + 2];
  for (let i = 0; i < nargs; i++) a[i] = argsF64[i];
  const n = ctl[CTL.N];
  const chunk = ctl[CTL.CHUNK];
  let total = 0;
  try {
    for (;;) {
      const start = Atomics.add(ctl, CTL.NEXT, chunk);
      if (start >= n) break;
      a[nargs] = start;
      a[nargs + 1] = Math.min(n, start + chunk);
      total += Number(Reflect.apply(fns[k], undefined, a) ?? 0);
    }
    results[t] = total;
  } catch (e) {
    const msg = new TextEncoder().encode(String(e instanceof Error ? e.message : e)).subarray(0, CTL_TEXT_BYTES - 1);
    text.fill(0);
    text.set(msg);
    results[t] = 0;
    Atomics.store(ctl, CTL.NEXT, n);
    Atomics.store(ctl, CTL.ERROR, 1);
  }
  Atomics.add(ctl, CTL.DONE, 1);
  Atomics.notify(ctl, CTL.DONE);
}

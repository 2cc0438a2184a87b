/**
 * Loads one model in a fresh process and reports its peak resident memory (Linux VmHWM) before
 * and after, beside the bytes the weights take in wasm memory. Run by a test through spawnSync.
 */
import { readFileSync } from 'node:fs';
import { Engine } from '../../src/engine/engine.ts';

function peakRssBytes(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

const before = peakRssBytes();
const engine = await Engine.load(process.argv[2]!, { threads: 1, weights: process.argv[3] as 'f32' | 'q8' });
const after = peakRssBytes();
process.stdout.write(JSON.stringify({
  before,
  after,
  wasmBytes: engine.runtime.memory.buffer.byteLength,
  // The allocator's high-water mark: every byte of wasm memory in use at once while loading.
  allocPeak: engine.runtime.peakBytes(),
  weightBytes: engine.model.weights.bytes,
}) + '\n');
await engine.close();

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Runtime } from '../../src/runtime/wasm.ts';
import { BlockPool } from '../../src/kv/pool.ts';
import { SequenceKV } from '../../src/kv/store.ts';
import { makeRng } from '../../src/engine/sampling.ts';

/** Brute-force page min/max over dense rows. */
function pageBounds(rows: Float32Array, n: number, d: number, page: number): { min: number[]; max: number[] } {
  const min: number[] = [];
  const max: number[] = [];
  for (let p = 0; p * page < n; p++) {
    for (let i = 0; i < d; i++) {
      let lo = Infinity;
      let hi = -Infinity;
      for (let s = p * page; s < Math.min(n, (p + 1) * page); s++) { lo = Math.min(lo, rows[s * d + i]!); hi = Math.max(hi, rows[s * d + i]!); }
      min.push(lo);
      max.push(hi);
    }
  }
  return { min, max };
}

test('compaction moves K, V and positions down, returns trailing blocks, keeps page summaries exact', async () => {
  const rt = await Runtime.create({ threads: 1 });
  try {
    const d = 8;
    const kvHeads = 2;
    const page = 3;
    const pool = new BlockPool(rt, { headDim: d, blockSlots: 16, maxBytes: 64 * 2 ** 20 });
    const seq = new SequenceKV(rt, pool, { layers: 1, kvHeads, maxTokens: 256 });
    seq.enableSummaries(page);
    const rng = makeRng(5);
    const T = 77;
    const k = rt.alloc(T * kvHeads * d * 4);
    const v = rt.alloc(T * kvHeads * d * 4);
    const kDense = Float32Array.from({ length: T * kvHeads * d }, () => rng() * 2 - 1);
    const vDense = Float32Array.from({ length: T * kvHeads * d }, () => rng() * 2 - 1);
    rt.f32(k, kDense.length).set(kDense);
    rt.f32(v, vDense.length).set(vDense);
    seq.append(0, k, v, T, Int32Array.from({ length: T }, (_, i) => i));
    const row = (src: Float32Array, t: number, h: number) => Array.from(src.subarray(t * kvHeads * d + h * d, t * kvHeads * d + h * d + d));

    // Different kept sets per head, lengths not multiples of the block or the page.
    const keeps = [Int32Array.from([0, 1, 2, 3, 10, 17, 40, 41, 63, 64, 76]), Int32Array.from({ length: 37 }, (_, i) => i * 2 + 1)];
    for (let h = 0; h < kvHeads; h++) seq.compact(0, h, keeps[h]!);
    assert.equal(pool.blocksInUse, Math.ceil(11 / 16) + Math.ceil(37 / 16), 'trailing blocks went back to the pool');
    for (let h = 0; h < kvHeads; h++) {
      const head = seq.head(0, h);
      const keep = keeps[h]!;
      assert.equal(head.length, keep.length);
      const keys = seq.readKeys(0, h);
      const values = seq.readValues(0, h);
      keep.forEach((s, i) => {
        assert.deepEqual(Array.from(keys.subarray(i * d, i * d + d)), row(kDense, s, h));
        assert.deepEqual(Array.from(values.subarray(i * d, i * d + d)), row(vDense, s, h));
        assert.equal(head.positions[i], s);
      });
      const want = pageBounds(keys, head.length, d, page);
      assert.deepEqual(Array.from(head.summary!.min.subarray(0, want.min.length)), want.min);
      assert.deepEqual(Array.from(head.summary!.max.subarray(0, want.max.length)), want.max);
      assert.equal(head.summary!.pages, Math.ceil(head.length / page));
    }

    // Appends after compaction continue the summaries and the positions.
    seq.append(0, k, v, 5, Int32Array.from([77, 78, 79, 80, 81]));
    for (let h = 0; h < kvHeads; h++) {
      const head = seq.head(0, h);
      const keys = seq.readKeys(0, h);
      const want = pageBounds(keys, head.length, d, page);
      assert.deepEqual(Array.from(head.summary!.min.subarray(0, want.min.length)), want.min);
      assert.deepEqual(Array.from(head.summary!.max.subarray(0, want.max.length)), want.max);
      assert.equal(head.positions[head.length - 1], 81);
    }
    assert.throws(() => seq.compact(0, 0, Int32Array.from([3, 2])), RangeError);

    // Expansion gives every query head its own copy (G times the blocks).
    const before = seq.head(0, 1).length;
    seq.expandLayer(0, 3);
    assert.equal(seq.headsIn(0).length, kvHeads * 3);
    assert.equal(seq.head(0, 5).length, before);
    assert.deepEqual(Array.from(seq.readKeys(0, 5)), Array.from(seq.readKeys(0, 3)));
    seq.release();
    assert.equal(pool.blocksInUse, 0);
  } finally {
    await rt.close();
  }
});

test('page summaries live in wasm memory, are read there in place, and are freed with their heads', async () => {
  const rt = await Runtime.create({ threads: 1 });
  try {
    const d = 8;
    const kvHeads = 2;
    const page = 4;
    const pool = new BlockPool(rt, { headDim: d, blockSlots: 16, maxBytes: 64 * 2 ** 20 });
    const T = 300; // past the summary's first capacity (16 pages), so its wasm arrays grow
    const k = rt.alloc(T * kvHeads * d * 4);
    const v = rt.alloc(T * kvHeads * d * 4);
    const rng = makeRng(9);
    rt.f32(k, T * kvHeads * d).set(Float32Array.from({ length: T * kvHeads * d }, () => rng() * 2 - 1));
    rt.f32(v, T * kvHeads * d).set(Float32Array.from({ length: T * kvHeads * d }, () => rng() * 2 - 1));
    pool.ensureRegion(); // the pool's blocks are one region, taken once; the baseline is after it
    const baseline = rt.bytesInUse();
    const seq = new SequenceKV(rt, pool, { layers: 2, kvHeads, maxTokens: 512 });
    seq.enableSummaries(page);
    seq.append(0, k, v, T, Int32Array.from({ length: T }, (_, i) => i));
    seq.append(1, k, v, T, Int32Array.from({ length: T }, (_, i) => i));
    for (let h = 0; h < kvHeads; h++) {
      const s = seq.head(0, h).summary!;
      assert.ok(s.minPtr > 0 && s.maxPtr > 0, 'the summary is in wasm memory');
      // What a kernel reads at the pointers is the summary itself, and it is exact.
      const want = pageBounds(seq.readKeys(0, h), T, d, page);
      assert.deepEqual(Array.from(rt.f32(s.minPtr, want.min.length)), want.min);
      assert.deepEqual(Array.from(rt.f32(s.maxPtr, want.max.length)), want.max);
    }
    seq.compact(1, 0, Int32Array.from({ length: 50 }, (_, i) => i * 3));
    seq.expandLayer(1, 2);
    assert.ok(rt.bytesInUse() > baseline);
    seq.release();
    assert.equal(rt.bytesInUse(), baseline, 'block tables and summaries all went back to the runtime');
  } finally {
    await rt.close();
  }
});

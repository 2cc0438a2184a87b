import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Runtime } from '../../src/runtime/wasm.ts';
import { BlockPool, PoolExhaustedError } from '../../src/kv/pool.ts';
import { SequenceKV } from '../../src/kv/store.ts';

test('pool: blocks per head are ceil(length/16), freed on release, reused, and kept across growth', async () => {
  const rt = await Runtime.create({ threads: 1 });
  try {
    const d = 8;
    const kvHeads = 2;
    const pool = new BlockPool(rt, { headDim: d, blockSlots: 16, maxBytes: 64 * 2 ** 20 });
    const seq = new SequenceKV(rt, pool, { layers: 2, kvHeads, maxTokens: 100 });
    const T = 37;
    const k = rt.alloc(T * kvHeads * d * 4);
    const v = rt.alloc(T * kvHeads * d * 4);
    const kf = rt.f32(k, T * kvHeads * d);
    const vf = rt.f32(v, T * kvHeads * d);
    for (let i = 0; i < kf.length; i++) { kf[i] = i; vf[i] = -i; }
    const pos = Int32Array.from({ length: T }, (_, i) => i + 100);
    seq.append(0, k, v, T, pos);
    seq.append(1, k, v, T, pos);
    const perHead = Math.ceil(T / 16);
    assert.equal(pool.blocksInUse, perHead * 2 * kvHeads);
    assert.equal(pool.bytesInUse, perHead * 2 * kvHeads * pool.blockBytes);
    assert.ok(pool.capacityBlocks >= pool.blocksInUse, 'pool grew past its initial 2 blocks');
    // Every slot's K and V sit where the block table says, after the pool moved.
    for (let l = 0; l < 2; l++) {
      for (let h = 0; h < kvHeads; h++) {
        const head = seq.head(l, h);
        const table = rt.i32(head.tablePtr, head.maxBlocks);
        for (let s = 0; s < T; s++) {
          const base = pool.blockPtr(table[s >> 4]!) + (s % 16) * d * 4;
          const kk = rt.f32(base, d);
          const vv = rt.f32(base + 16 * d * 4, d);
          assert.equal(kk[3], s * kvHeads * d + h * d + 3);
          assert.equal(vv[5], -(s * kvHeads * d + h * d + 5));
          assert.equal(head.positions[s], s + 100);
        }
      }
    }
    const peak = pool.peakBytes;
    seq.release();
    assert.equal(pool.blocksInUse, 0);
    assert.equal(pool.peakBytes, peak);
    const other = new SequenceKV(rt, pool, { layers: 1, kvHeads: 1, maxTokens: 64 });
    other.append(0, k, v, 16, pos);
    assert.equal(pool.blocksInUse, 1);
    other.release();

    const small = new BlockPool(rt, { headDim: d, maxBytes: 2 * pool.blockBytes });
    small.allocate();
    small.allocate();
    assert.throws(() => small.allocate(), PoolExhaustedError);
  } finally {
    await rt.close();
  }
});

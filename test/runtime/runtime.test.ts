import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Runtime } from '../../src/runtime/wasm.ts';
import { WasmMemoryError } from '../../src/errors.ts';

describe('Runtime allocator', () => {
  let rt: Runtime;
  before(async () => { rt = await Runtime.create({ threads: 1 }); });
  after(async () => { await rt.close(); });

  test('alignment, reuse after free, coalescing and accounting', () => {
    const base = rt.bytesInUse();
    const a = rt.alloc(100);
    const b = rt.alloc(1000);
    const c = rt.alloc(10, 256);
    assert.equal(a % 64, 0);
    assert.equal(c % 256, 0);
    const spans = [[a, 128], [b, 1024], [c, 64]].sort((p, q) => p[0] - q[0]);
    for (let i = 1; i < spans.length; i++) assert.ok(spans[i - 1][0] + spans[i - 1][1] <= spans[i][0], 'blocks must not overlap');
    assert.equal(rt.bytesInUse() - base, 128 + 1024 + 64);
    rt.free(a);
    rt.free(b);
    // a and b coalesced: a block bigger than either fits at a.
    const d = rt.alloc(1100);
    assert.equal(d, a);
    assert.throws(() => rt.free(a + 64), RangeError);
    rt.free(c);
    rt.free(d);
    assert.equal(rt.bytesInUse(), base);
    assert.ok(rt.peakBytes() >= base + 128 + 1024 + 64);
  });

  test('grows memory and keeps views valid; past 4 GiB throws WasmMemoryError', () => {
    const before = rt.memory.buffer.byteLength;
    const p = rt.alloc(before + 3 * 2 ** 20);
    assert.ok(rt.memory.buffer.byteLength >= p + before + 3 * 2 ** 20);
    const v = rt.f32(p + before, 4);
    v[3] = 7;
    assert.equal(rt.f32(p + before, 4)[3], 7);
    rt.free(p);
    assert.throws(() => rt.alloc(5 * 2 ** 30), (e: unknown) => e instanceof WasmMemoryError && /4 GiB/.test(e.message));
  });
});

describe('Runtime threads', () => {
  test('two threads share memory, the caller computes, close lets the process exit', async () => {
    const rt = await Runtime.create({ threads: 2 });
    assert.equal(rt.threads, 2);
    const n = 1 << 18;
    const p = rt.alloc(n * 4);
    const v = rt.f32(p, n);
    let want = 0;
    for (let i = 0; i < n; i++) { v[i] = (i % 7) - 3; want += v[i]; }
    // Many back-to-back dispatches exercise the spin/wait handshake.
    for (let it = 0; it < 200; it++) assert.equal(rt.k.sumF32(p, n), want);
    await rt.close();
  });
});

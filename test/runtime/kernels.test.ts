// Every kernel against a plain TypeScript reference, on 1 and 2 threads.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Runtime } from '../../src/runtime/wasm.ts';
import { Q8_GROUP_ROWS, q8Groups, q8ScaleIndex, q8ValueIndex } from '../../src/runtime/kernels.ts';
import { UsageError } from '../../src/errors.ts';
import { assertClose, put, randArray, rng } from './helpers.ts';

function refMatmul(x: Float32Array, w: Float32Array, bias: Float32Array | null, M: number, K: number, N: number): Float64Array {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = bias ? bias[n] : 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
      out[m * N + n] = s;
    }
  }
  return out;
}

/** Per-32-block symmetric quantization as the contract defines it (scale = max|v|/127). */
function refQuant(v: Float32Array, rows: number, K: number): { q: Int8Array; s: Float32Array } {
  const q = new Int8Array(rows * K);
  const s = new Float32Array((rows * K) / 32);
  for (let b = 0; b < s.length; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(v[b * 32 + i]));
    const d = Math.fround(amax / 127);
    s[b] = d;
    const inv = d ? Math.fround(1 / d) : 0;
    for (let i = 0; i < 32; i++) q[b * 32 + i] = Math.round(Math.fround(v[b * 32 + i] * inv));
  }
  return { q, s };
}

function refAttentionRow(q: Float32Array, qOff: number, keys: Float32Array[], vals: Float32Array[], d: number, scale: number): Float64Array {
  const sc = keys.map((k) => { let s = 0; for (let i = 0; i < d; i++) s += q[qOff + i] * k[i]; return s * scale; });
  const m = Math.max(...sc);
  const e = sc.map((s) => Math.exp(s - m));
  const z = e.reduce((a, b) => a + b, 0);
  const out = new Float64Array(d);
  for (let j = 0; j < keys.length; j++) for (let i = 0; i < d; i++) out[i] += (e[j] / z) * vals[j][i];
  return out;
}

for (const threads of [1, 2]) {
  describe(`kernels on ${threads} thread(s)`, () => {
    let rt: Runtime;
    before(async () => { rt = await Runtime.create({ threads }); });
    after(async () => { await rt.close(); });

    // Tolerance for f32 dot products of length K with |terms| <= 1: a few ulps of sqrt(K) growth.
    test('matmul f32: GEMM and matrix-vector, odd sizes, with and without bias', () => {
      const r = rng(1);
      for (const [M, K, N, withBias] of [[1, 301, 131, true], [1, 64, 8, false], [33, 100, 70, true], [6, 37, 13, false], [17, 896, 45, true]] as const) {
        const x = randArray(M * K, r), w = randArray(N * K, r), b = randArray(N, r);
        const out = rt.alloc(M * N * 4);
        rt.k.matmul(out, put(rt, x), put(rt, w), withBias ? put(rt, b) : 0, M, K, N);
        assertClose(rt.f32(out, M * N), refMatmul(x, w, withBias ? b : null, M, K, N), 2e-5 * Math.sqrt(K), 1e-5, `matmul ${M}x${K}x${N}`);
      }
    });

    test('quantizeQ8 matches per-block max/127 quantization; rejects K % 32 != 0', () => {
      const r = rng(2);
      const N = 37, K = 96;
      const w = randArray(N * K, r, 3);
      w.fill(0, 0, 32); // an all-zero block must give scale 0 and zeros
      const q = rt.k.quantizeQ8(put(rt, w), N, K);
      const ref = refQuant(w, N, K);
      // The packed layout, read back in row order through its index functions.
      const R = Q8_GROUP_ROWS, packedQ = rt.i8(q.qs, q8Groups(N) * R * K), packedS = rt.f32(q.scales, (q8Groups(N) * R * K) / 32);
      const got = Int8Array.from({ length: N * K }, (_, i) => packedQ[q8ValueIndex(K, Math.floor(i / K), i % K)]!);
      const scales = Float32Array.from({ length: (N * K) / 32 }, (_, i) => packedS[q8ScaleIndex(K, Math.floor(i / (K / 32)), i % (K / 32))]!);
      assertClose(scales, ref.s, 0, 1e-7, 'scales');
      // The padding rows of the last group (37 = 4 groups + 5 rows) are zero.
      for (let n = N; n < q8Groups(N) * R; n++) for (let k = 0; k < K; k++) assert.equal(packedQ[q8ValueIndex(K, n, k)], 0, `padding (${n}, ${k})`);
      // Ties may round differently (nearest-even vs half-away); anything else must match exactly.
      let diff = 0;
      for (let i = 0; i < N * K; i++) {
        assert.ok(Math.abs(got[i] - ref.q[i]) <= 1, `q[${i}]`);
        if (got[i] !== ref.q[i]) diff++;
      }
      assert.ok(diff <= 2, `${diff} quantized values differ`);
      assert.throws(() => rt.k.quantizeQ8(put(rt, w), 3, 48), UsageError);
    });

    test('matmulQ8: integer block dots equal the reference and approximate the f32 product', () => {
      const r = rng(3);
      // Shapes reach every tile of gemmQ8: 4-row tiles and their last rows, one row, padded last groups, blocks of 64 x rows.
      for (const [M, K, N, withBias] of [[1, 256, 130, true], [1, 64, 7, false], [9, 128, 61, true], [4, 32, 5, false], [16, 96, 8, false], [67, 320, 13, true], [130, 544, 22, false]] as const) {
        const x = randArray(M * K, r), w = randArray(N * K, r), b = randArray(N, r);
        const wq = rt.k.quantizeQ8(put(rt, w), N, K);
        const out = rt.alloc(M * N * 4);
        rt.k.matmulQ8(out, put(rt, x), wq, withBias ? put(rt, b) : 0, M);
        const wr = refQuant(w, N, K), xr = refQuant(x, M, K);
        const want = new Float64Array(M * N);
        const nb = K / 32;
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < N; n++) {
            let s = withBias ? b[n] : 0;
            for (let blk = 0; blk < nb; blk++) {
              let isum = 0;
              for (let i = 0; i < 32; i++) isum += wr.q[n * K + blk * 32 + i] * xr.q[m * K + blk * 32 + i];
              s += isum * wr.s[n * nb + blk] * xr.s[m * nb + blk];
            }
            want[m * N + n] = s;
          }
        }
        const got = rt.f32(out, M * N);
        assertClose(got, want, 1e-4, 1e-4, `matmulQ8 ${M}x${K}x${N}`);
        // Quantization error of 8-bit blocks: within 2% of the product's scale sqrt(K)/3.
        assertClose(got, refMatmul(x, w, withBias ? b : null, M, K, N), 0.02 * Math.sqrt(K / 3), 0, `matmulQ8 vs f32 ${M}x${K}x${N}`);
      }
    });

    test('quantizeAct once, matmulQ8Quantized on several weights, equals matmulQ8; stale or mismatched input is rejected', () => {
      const r = rng(11);
      for (const M of [1, 5]) {
        const K = 160, x = randArray(M * K, r);
        const ws = [37, 64, 9].map((N) => rt.k.quantizeQ8(put(rt, randArray(N * K, r)), N, K));
        const bias = put(rt, randArray(64, r));
        const xp = put(rt, x);
        const want = ws.map((w, i) => {
          const o = rt.alloc(M * w.N * 4);
          rt.k.matmulQ8(o, xp, w, i === 1 ? bias : 0, M);
          return rt.f32(o, M * w.N).slice();
        });
        const act = rt.k.quantizeAct(xp, M, K);
        ws.forEach((w, i) => {
          const o = rt.alloc(M * w.N * 4);
          rt.k.matmulQ8Quantized(o, act, w, i === 1 ? bias : 0, M);
          assert.deepEqual(rt.f32(o, M * w.N), want[i], `weight ${i}, M=${M}`);
        });
        const o = rt.alloc(M * 64 * 4);
        assert.throws(() => rt.k.matmulQ8Quantized(o, act, rt.k.quantizeQ8(put(rt, randArray(64 * 96, r)), 64, 96), 0, M), UsageError);
        rt.k.quantizeAct(xp, M, K);
        assert.throws(() => rt.k.matmulQ8Quantized(o, act, ws[0], 0, M), UsageError, 'stale activation');
        assert.throws(() => rt.k.quantizeAct(xp, M, 100), UsageError);
      }
    });

    test('matmulQ8QuantizedMany: several matrices in one split equal each one alone, bit for bit; mismatches are rejected', () => {
      const r = rng(12);
      // Shapes past one thread's chunk and with padded last groups; 67 rows pass gemmQ8's 64-row blocks.
      for (const M of [1, 3, 8, 67]) {
        const K = 192, x = randArray(M * K, r);
        const ws = [896 / 4, 13, 61, 128].map((N) => rt.k.quantizeQ8(put(rt, randArray(N * K, r)), N, K));
        const biases = ws.map((w, i) => (i % 2 === 0 ? put(rt, randArray(w.N, r)) : 0));
        const xp = put(rt, x);
        const act = rt.k.quantizeAct(xp, M, K);
        const want = ws.map((w, i) => {
          const o = rt.alloc(M * w.N * 4);
          rt.k.matmulQ8Quantized(o, act, w, biases[i]!, M);
          return rt.f32(o, M * w.N).slice();
        });
        const outs = ws.map((w) => rt.alloc(M * w.N * 4));
        for (const o of outs) rt.f32(o, 1)[0] = NaN;
        rt.k.matmulQ8QuantizedMany(outs, act, ws, biases, M);
        ws.forEach((w, i) => assert.deepEqual(rt.f32(outs[i]!, M * w.N), want[i], `matrix ${i} (N=${w.N}), M=${M}`));
        assert.throws(() => rt.k.matmulQ8QuantizedMany(outs.slice(1), act, ws, biases, M), UsageError);
        assert.throws(() => rt.k.matmulQ8QuantizedMany(outs.slice(0, 2), act, [ws[0]!, rt.k.quantizeQ8(put(rt, randArray(8 * 96, r)), 8, 96)], biases.slice(0, 2), M), UsageError);
        rt.k.quantizeAct(xp, M, K);
        assert.throws(() => rt.k.matmulQ8QuantizedMany(outs, act, ws, biases, M), UsageError, 'stale activation');
      }
    });

    test('rmsnorm, also in place', () => {
      const r = rng(4);
      const M = 40, D = 901;
      const x = randArray(M * D, r, 2), wt = randArray(D, r);
      const want = new Float64Array(M * D);
      for (let m = 0; m < M; m++) {
        let ss = 0;
        for (let i = 0; i < D; i++) ss += x[m * D + i] ** 2;
        const inv = 1 / Math.sqrt(ss / D + 1e-6);
        for (let i = 0; i < D; i++) want[m * D + i] = x[m * D + i] * inv * wt[i];
      }
      const xp = put(rt, x), out = rt.alloc(M * D * 4), wp = put(rt, wt);
      rt.k.rmsnorm(out, xp, wp, M, D, 1e-6);
      assertClose(rt.f32(out, M * D), want, 1e-5, 1e-5, 'rmsnorm');
      rt.k.rmsnorm(xp, xp, wp, M, D, 1e-6);
      assertClose(rt.f32(xp, M * D), want, 1e-5, 1e-5, 'rmsnorm in place');
    });

    test('rope: rotate-half convention at arbitrary positions', () => {
      const r = rng(5);
      for (const headDim of [64, 10]) {
        const M = 50, H = 3, half = headDim / 2;
        const x = randArray(M * H * headDim, r);
        const pos = Int32Array.from({ length: M }, (_, i) => (i * 977) % 5000);
        const invFreq = Float32Array.from({ length: half }, (_, i) => 1 / 10000 ** ((2 * i) / headDim));
        const want = new Float64Array(x);
        for (let m = 0; m < M; m++) {
          for (let h = 0; h < H; h++) {
            const o = (m * H + h) * headDim;
            for (let i = 0; i < half; i++) {
              const a = Math.fround(pos[m] * invFreq[i]);
              const c = Math.cos(a), s = Math.sin(a);
              want[o + i] = x[o + i] * c - x[o + i + half] * s;
              want[o + i + half] = x[o + i + half] * c + x[o + i] * s;
            }
          }
        }
        const xp = put(rt, x);
        rt.k.rope(xp, M, H, headDim, put(rt, pos), put(rt, invFreq));
        assertClose(rt.f32(xp, x.length), want, 2e-6, 1e-6, `rope headDim=${headDim}`);
      }
    });

    test('siluMul, add and softmax on odd sizes', () => {
      const r = rng(6);
      const n = 100003;
      const g = randArray(n, r, 8), u = randArray(n, r);
      const out = rt.alloc(n * 4);
      rt.k.siluMul(out, put(rt, g), put(rt, u), n);
      assertClose(rt.f32(out, n), Array.from(g, (v, i) => (v / (1 + Math.exp(-v))) * u[i]), 1e-6, 1e-5, 'siluMul');
      // Saturated gates (exp overflow/underflow region) and exact zeros take the clamped SIMD path.
      const ge = new Float32Array([-200, -100, -88.5, -87, -30, -1e-8, 0, 1e-8, 30, 87, 88.5, 100, 200, 3.5, -3.5, 0.25]);
      const ue = new Float32Array(ge.length).fill(1.5);
      const oe = rt.alloc(ge.length * 4);
      rt.k.siluMul(oe, put(rt, ge), put(rt, ue), ge.length);
      assertClose(rt.f32(oe, ge.length), Array.from(ge, (v) => (v / (1 + Math.exp(-v))) * 1.5), 1e-6, 1e-6, 'siluMul extremes');
      rt.k.add(out, put(rt, g), put(rt, u), n);
      assertClose(rt.f32(out, n), Array.from(g, (v, i) => Math.fround(v + u[i])), 0, 0, 'add');
      const rows = 37, cols = 1001;
      const s = randArray(rows * cols, r, 30);
      const want = new Float64Array(rows * cols);
      for (let i = 0; i < rows; i++) {
        const row = s.subarray(i * cols, (i + 1) * cols);
        const m = Math.max(...row);
        const z = row.reduce((a, v) => a + Math.exp(v - m), 0);
        for (let j = 0; j < cols; j++) want[i * cols + j] = Math.exp(row[j] - m) / z;
      }
      const sp = put(rt, s);
      rt.k.softmax(sp, rows, cols);
      assertClose(rt.f32(sp, rows * cols), want, 1e-7, 1e-5, 'softmax');
    });

    test('attentionCausal: GQA, S > T, key count beyond one chunk', () => {
      const r = rng(7);
      for (const [T, S, Hq, Hkv, d] of [[7, 12, 6, 2, 20], [5, 5, 4, 4, 18], [3, 1300, 2, 1, 16], [40, 40, 2, 1, 64]] as const) {
        const q = randArray(T * Hq * d, r), k = randArray(S * Hkv * d, r, 2), v = randArray(S * Hkv * d, r);
        const scale = 1 / Math.sqrt(d);
        const out = rt.alloc(T * Hq * d * 4);
        rt.k.attentionCausal(out, put(rt, q), put(rt, k), put(rt, v), T, S, Hq, Hkv, d, scale);
        const want = new Float64Array(T * Hq * d);
        for (let t = 0; t < T; t++) {
          for (let h = 0; h < Hq; h++) {
            const kh = Math.floor(h / (Hq / Hkv));
            const keys: Float32Array[] = [], vals: Float32Array[] = [];
            for (let j = 0; j <= S - T + t; j++) {
              keys.push(k.subarray((j * Hkv + kh) * d, (j * Hkv + kh + 1) * d));
              vals.push(v.subarray((j * Hkv + kh) * d, (j * Hkv + kh + 1) * d));
            }
            want.set(refAttentionRow(q, (t * Hq + h) * d, keys, vals, d, scale), (t * Hq + h) * d);
          }
        }
        assertClose(rt.f32(out, want.length), want, 1e-5, 1e-4, `attentionCausal T=${T} S=${S} Hq=${Hq} Hkv=${Hkv} d=${d}`);
      }
    });

    test('attendPaged: shuffled block table, partial last block, slot subset, multi-row causal jobs, keys beyond one chunk', () => {
      const r = rng(8);
      const blockSlots = 5, d = 12, G = 3, Hkv = 2, Hq = G * Hkv, rowStride = Hq * d;
      const nBlocks = 400;
      const pool = randArray(nBlocks * 2 * blockSlots * d, r);
      const poolPtr = put(rt, pool);
      const scale = 0.37;
      // Jobs: (kv head, nKeys, nRows, subset?)
      const specs = [
        { kh: 0, nKeys: 23, nRows: 1, subset: false },
        { kh: 1, nKeys: 23, nRows: 4, subset: false },
        { kh: 0, nKeys: 9, nRows: 3, subset: true },
        { kh: 1, nKeys: 1, nRows: 1, subset: false },
        { kh: 1, nKeys: 16, nRows: 2, subset: true },
        // More keys than one kernel chunk (256): exercises the online-softmax rescale.
        { kh: 0, nKeys: 700, nRows: 2, subset: false },
        { kh: 1, nKeys: 530, nRows: 1, subset: true },
      ];
      const jobs = new Int32Array(specs.length * 8);
      const checks: { outPtr: number; want: Float64Array; n: number }[] = [];
      const perm = Array.from({ length: nBlocks }, (_, i) => i).sort(() => r());
      let nextBlock = 0;
      specs.forEach((sp, ji) => {
        const totalSlots = sp.subset ? 2 * sp.nKeys + 3 : sp.nKeys;
        const nTable = Math.ceil(totalSlots / blockSlots);
        const table = Int32Array.from(perm.slice(nextBlock, nextBlock + nTable));
        nextBlock += nTable;
        let slots: Int32Array | null = null;
        if (sp.subset) {
          const all = Array.from({ length: totalSlots }, (_, i) => i).filter(() => r() > 0);
          while (all.length < sp.nKeys) all.push(totalSlots - 1 - all.length);
          slots = Int32Array.from(new Set(all.slice(0, sp.nKeys).sort((a, b) => a - b)));
          while (slots.length < sp.nKeys) slots = Int32Array.from(Array.from({ length: sp.nKeys }, (_, i) => 2 * i));
        }
        const q = randArray(sp.nRows * rowStride, r);
        const qPtr = put(rt, q) + sp.kh * G * d * 4; // this head group's first query head
        const outBase = rt.alloc(sp.nRows * rowStride * 4);
        rt.f32(outBase, sp.nRows * rowStride).fill(NaN);
        const outPtr = outBase + sp.kh * G * d * 4;
        jobs.set([qPtr, outPtr, put(rt, table), sp.nKeys, slots ? put(rt, slots) : 0, sp.nRows, rt.alloc(sp.nKeys * 4), 0], ji * 8);
        const want = new Float64Array(sp.nRows * G * d);
        const slotAt = (i: number) => (slots ? slots[i] : i);
        const kv = (s: number, which: 0 | 1) => {
          const base = (table[Math.floor(s / blockSlots)] * 2 + which) * blockSlots * d + (s % blockSlots) * d;
          return pool.subarray(base, base + d);
        };
        for (let row = 0; row < sp.nRows; row++) {
          const nVis = sp.nKeys - sp.nRows + row + 1;
          const keys = Array.from({ length: nVis }, (_, i) => kv(slotAt(i), 0));
          const vals = Array.from({ length: nVis }, (_, i) => kv(slotAt(i), 1));
          for (let g = 0; g < G; g++) {
            want.set(refAttentionRow(q, row * rowStride + (sp.kh * G + g) * d, keys, vals, d, scale), (row * G + g) * d);
          }
        }
        checks.push({ outPtr, want, n: sp.nRows });
      });
      rt.k.attendPaged(put(rt, jobs), specs.length, poolPtr, blockSlots, d, G, rowStride, scale);
      checks.forEach(({ outPtr, want, n }, ji) => {
        const got = new Float64Array(n * G * d);
        for (let row = 0; row < n; row++) got.set(rt.f32(outPtr + row * rowStride * 4, G * d), row * G * d);
        assertClose(got, want, 1e-5, 1e-4, `attendPaged job ${ji}`);
      });
    });

    test('attendPaged: multi-row causal jobs, row counts off the row tile, key counts off the key chunk, G = 1, 2, 3', () => {
      const r = rng(11);
      // Plain softmax attention, written out here rather than shared with the other tests.
      const attend = (qv: Float32Array, keys: Float32Array[], vals: Float32Array[], d: number, scale: number): Float64Array => {
        const out = new Float64Array(d);
        if (keys.length === 0) return out;
        const s = keys.map((k) => k.reduce((acc, kv, i) => acc + kv * qv[i], 0) * scale);
        const m = s.reduce((a, b) => Math.max(a, b), -Infinity);
        const w = s.map((x) => Math.exp(x - m));
        const z = w.reduce((a, b) => a + b, 0);
        vals.forEach((v, j) => { for (let i = 0; i < d; i++) out[i] += (w[j] / z) * v[i]; });
        return out;
      };
      // (G, d, blockSlots): scalar and partial-vector head tails, blocks smaller and larger than a tile.
      for (const [G, d, blockSlots] of [[1, 16, 16], [2, 7, 5], [3, 20, 16], [2, 32, 7], [1, 64, 3]] as const) {
        const Hkv = 2, Hq = G * Hkv, rowStride = Hq * d + 3;
        const scale = 0.5 / Math.sqrt(d);
        // Jobs: kv head, nKeys, nRows, slot subset. Row r sees nKeys - nRows + r + 1 keys, so e.g.
        // (270, 19) puts a key-chunk boundary inside the first row tile, with rows that see no key
        // of the last chunk, and (261, 13) / (37, 37) / (264, 9) leave partial row tiles.
        const specs = [
          { kh: 0, nKeys: 1, nRows: 1, subset: false },
          { kh: 1, nKeys: 37, nRows: 37, subset: false },
          { kh: 0, nKeys: 270, nRows: 19, subset: false },
          { kh: 1, nKeys: 530, nRows: 11, subset: false },
          { kh: 0, nKeys: 261, nRows: 13, subset: true },
          { kh: 1, nKeys: 264, nRows: 9, subset: false },
          { kh: 0, nKeys: 300, nRows: 16, subset: false },
        ];
        const tables: Int32Array[] = [];
        const slotLists: (Int32Array | null)[] = [];
        let nBlocks = 0;
        for (const sp of specs) {
          const total = sp.subset ? 2 * sp.nKeys + 5 : sp.nKeys;
          const slots = sp.subset ? Int32Array.from({ length: sp.nKeys }, (_, i) => 2 * i + (r() > 0 ? 1 : 0)) : null;
          slotLists.push(slots);
          const n = Math.ceil(total / blockSlots);
          tables.push(Int32Array.from({ length: n }, (_, i) => nBlocks + i));
          nBlocks += n;
        }
        // Blocks in shuffled order, so consecutive slots cross to unrelated blocks.
        const perm = Array.from({ length: nBlocks }, (_, i) => i).sort(() => r());
        for (const t of tables) for (let i = 0; i < t.length; i++) t[i] = perm[t[i]];
        const pool = randArray(nBlocks * 2 * blockSlots * d, r, 2);
        const poolPtr = put(rt, pool);
        const kv = (table: Int32Array, s: number, which: 0 | 1) => {
          const base = (table[Math.floor(s / blockSlots)] * 2 + which) * blockSlots * d + (s % blockSlots) * d;
          return pool.subarray(base, base + d);
        };
        const jobs = new Int32Array(specs.length * 8);
        const checks: { outPtr: number; nRows: number; want: Float64Array }[] = [];
        specs.forEach((sp, ji) => {
          const table = tables[ji], slots = slotLists[ji];
          const q = randArray(sp.nRows * rowStride, r, 2);
          const qPtr = put(rt, q) + sp.kh * G * d * 4;
          const outBase = rt.alloc(sp.nRows * rowStride * 4);
          rt.f32(outBase, sp.nRows * rowStride).fill(NaN);
          const outPtr = outBase + sp.kh * G * d * 4;
          jobs.set([qPtr, outPtr, put(rt, table), sp.nKeys, slots ? put(rt, slots) : 0, sp.nRows, 0, 0], ji * 8);
          const want = new Float64Array(sp.nRows * G * d);
          for (let row = 0; row < sp.nRows; row++) {
            const nVis = sp.nKeys - sp.nRows + row + 1;
            const keys = Array.from({ length: nVis }, (_, i) => kv(table, slots ? slots[i] : i, 0));
            const vals = Array.from({ length: nVis }, (_, i) => kv(table, slots ? slots[i] : i, 1));
            for (let g = 0; g < G; g++) {
              const qOff = row * rowStride + (sp.kh * G + g) * d;
              want.set(attend(q.subarray(qOff, qOff + d), keys, vals, d, scale), (row * G + g) * d);
            }
          }
          checks.push({ outPtr, nRows: sp.nRows, want });
        });
        rt.k.attendPaged(put(rt, jobs), specs.length, poolPtr, blockSlots, d, G, rowStride, scale);
        checks.forEach(({ outPtr, nRows, want }, ji) => {
          const got = new Float64Array(nRows * G * d);
          for (let row = 0; row < nRows; row++) got.set(rt.f32(outPtr + row * rowStride * 4, G * d), row * G * d);
          assertClose(got, want, 1e-5, 1e-4, `attendPaged G=${G} d=${d} blockSlots=${blockSlots} job ${ji} (nKeys ${specs[ji].nKeys}, nRows ${specs[ji].nRows})`);
        });
      }
    });

    test('sumF32 over an unaligned range', () => {
      const r = rng(9);
      const n = 300007;
      const a = randArray(n + 1, r);
      const p = put(rt, a) + 4;
      const want = a.subarray(1).reduce((s, v) => s + v, 0);
      assert.ok(Math.abs(rt.k.sumF32(p, n) - want) < 1e-2, 'sum');
    });
  });
}

describe('threads=1 and threads=2 agree', () => {
  test('every parallel kernel gives identical results on 1 and 2 threads', async () => {
    const r = rng(10);
    const M = 24, K = 256, N = 100, T = 20, Hq = 4, Hkv = 2, d = 32;
    const x = randArray(M * K, r), w = randArray(N * K, r), q = randArray(T * Hq * d, r), kv = randArray(T * Hkv * d, r);
    const results: Float32Array[][] = [];
    for (const threads of [1, 2]) {
      const rt = await Runtime.create({ threads });
      const res: Float32Array[] = [];
      const xp = put(rt, x), wp = put(rt, w);
      const o1 = rt.alloc(M * N * 4), o2 = rt.alloc(N * 4), o3 = rt.alloc(M * N * 4), o4 = rt.alloc(T * Hq * d * 4);
      rt.k.matmul(o1, xp, wp, 0, M, K, N);
      rt.k.matmul(o2, xp, wp, 0, 1, K, N);
      const wq = rt.k.quantizeQ8(wp, N, K);
      rt.k.matmulQ8(o3, xp, wq, 0, M);
      rt.k.attentionCausal(o4, put(rt, q), put(rt, kv), put(rt, kv), T, T, Hq, Hkv, d, 0.2);
      res.push(rt.f32(o1, M * N).slice(), rt.f32(o2, N).slice(), rt.f32(o3, M * N).slice(), rt.f32(o4, T * Hq * d).slice(), rt.f32(wq.scales, (N * K) / 32).slice());
      results.push(res);
      await rt.close();
    }
    results[0].forEach((a, i) => assert.deepEqual(results[1][i], a, `output ${i}`));
  });
});

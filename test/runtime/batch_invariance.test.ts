// A row's product must not depend on the rows computed beside it: a decode step batched with other
// sequences has to give the bits of the same step run alone. Checked on both kernel builds, f32
// and int8 weights, for batch sizes that exercise every tile shape (f32: pairs, an odd last row;
// int8: 4-row tiles, their last rows, and one row; N = 44 is 5 groups of 8 and a padded one).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Runtime, type KernelBuild } from '../../src/runtime/wasm.ts';
import { put, randArray, rng } from './helpers.ts';

const K = 96; // three 32-blocks: an odd block count
const N = 44; // f32: eleven 4-column groups; int8: five 8-row groups and 4 rows
const ROWS = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 18, 67]; // 67: past gemmQ8's 64-row blocks

function firstDifference(a: Float32Array, b: Float32Array): string | null {
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i]) && !(a[i] === 0 && b[i] === 0)) return `index ${i}: ${a[i]} vs ${b[i]}`;
  return null;
}

for (const build of ['plain', 'relaxed'] as KernelBuild[]) {
  describe(`batch invariance, ${build} kernels`, () => {
    let rt: Runtime;
    before(async () => { rt = await Runtime.create({ threads: 2, kernels: build }); });
    after(async () => { await rt.close(); });

    const r = rng(11);
    const x = randArray(Math.max(...ROWS) * K + K, r);
    const w = randArray(N * K, r, 0.2);
    const bias = randArray(N, r, 0.1);

    /** Row i of a product over `rows` rows starting `shift` rows into x. */
    function product(kind: 'f32' | 'q8', rows: number, shift: number): Float32Array {
      const xp = put(rt, x.subarray(shift * K, (shift + rows) * K));
      const wp = put(rt, w);
      const bp = put(rt, bias);
      const out = rt.alloc(rows * N * 4);
      if (kind === 'f32') rt.k.matmul(out, xp, wp, bp, rows, K, N);
      else {
        const q = rt.k.quantizeQ8(wp, N, K);
        const act = rt.k.quantizeAct(xp, rows, K);
        rt.k.matmulQ8Quantized(out, act, q, bp, rows);
        rt.free(q.qs); rt.free(q.scales);
      }
      const res = rt.f32(out, rows * N).slice();
      rt.free(xp); rt.free(wp); rt.free(bp); rt.free(out);
      return res;
    }

    test('f32 and int8 rows equal the matrix-vector product of each row alone', () => {
      for (const kind of ['f32', 'q8'] as const) {
        const alone = Array.from({ length: Math.max(...ROWS) }, (_, m) => product(kind, 1, m));
        for (const M of ROWS) {
          const batch = product(kind, M, 0);
          for (let m = 0; m < M; m++) {
            const diff = firstDifference(batch.subarray(m * N, (m + 1) * N), alone[m]!);
            assert.equal(diff, null, `${kind}: row ${m} of ${M} differs from the row alone at ${diff}`);
          }
        }
      }
    });

    test('f32 and int8 prompt-size products: rows do not depend on their place in the batch', () => {
      for (const kind of ['f32', 'q8'] as const) {
        for (const M of [16, 17, 18, 66]) {
          const a = product(kind, M, 1);
          const b = product(kind, M + 1, 0); // the same rows, one place later
          for (let m = 0; m < M; m++) {
            const diff = firstDifference(a.subarray(m * N, (m + 1) * N), b.subarray((m + 1) * N, (m + 2) * N));
            assert.equal(diff, null, `${kind}: row ${m} of ${M} differs when shifted by one row: ${diff}`);
          }
        }
      }
    });
  });
}

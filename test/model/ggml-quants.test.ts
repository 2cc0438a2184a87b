import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readGgufHeader, type GgufTensorInfo } from '../../src/model/gguf.ts';
import { dequantize, ggmlTensorBytes, ggmlType } from '../../src/model/ggml-quants.ts';
import { GgufError } from '../../src/errors.ts';

// Made by tools/fixtures/make_ggml_quants.py: raw blocks per type plus gguf-py's dequantization of them.
const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'ggml-quants.gguf');
const SUPPORTED = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q4_K', 'Q5_K', 'Q6_K'];

const header = readGgufHeader(FIXTURE);
const file = fs.readFileSync(FIXTURE);

function tensor(name: string): GgufTensorInfo {
  const t = header.tensors.find((x) => x.name === name);
  assert.ok(t, `fixture has no tensor ${name}; rerun tools/fixtures/make_ggml_quants.py`);
  return t;
}

const numelOf = (t: GgufTensorInfo): number => t.dims.reduce((a, b) => a * b, 1);

function rawBytes(t: GgufTensorInfo): Uint8Array {
  const start = header.dataOffset + t.offset;
  return file.subarray(start, start + ggmlTensorBytes(t.type, numelOf(t)));
}

/** The `.ref` tensor's f32 values, read with Buffer's own float decoding (not the code under test). */
function refValues(name: string): Float32Array {
  const t = tensor(`${name}.ref`);
  const start = header.dataOffset + t.offset;
  const out = new Float32Array(numelOf(t));
  for (let i = 0; i < out.length; i++) out[i] = file.readFloatLE(start + 4 * i);
  return out;
}

/**
 * Every decoder's products are exact in f64 and round once to f32, as ggml's (and numpy's) f32
 * arithmetic rounds once, so the tolerance is 0 for all types: values must be identical, NaN
 * matching NaN.
 */
function assertSameValues(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const g = got[i], w = want[i];
    if (g === w || (Number.isNaN(g) && Number.isNaN(w))) continue;
    assert.fail(`${what}: element ${i} is ${g}, gguf-py's reference is ${w}`);
  }
}

for (const name of SUPPORTED) {
  test(`${name} dequantizes exactly as gguf-py's reference`, () => {
    const t = tensor(name);
    assert.equal(ggmlType(t.type)?.name, name);
    assert.deepEqual(t.dims, tensor(`${name}.ref`).dims);
    const want = refValues(name);
    const got = dequantize(t.type, rawBytes(t), numelOf(t));
    assertSameValues(got, want, name);
    // Quantized types must produce a spread of values, or a zero decoder would pass on zero refs.
    assert.ok(new Set(want).size > 16, `${name}: reference is degenerate`);
  });

  test(`${name} reads a source at an odd byteOffset, into a caller's buffer`, () => {
    const t = tensor(name);
    const raw = rawBytes(t);
    const shifted = new Uint8Array(raw.length + 3).subarray(1, raw.length + 1);
    shifted.set(raw);
    assert.equal(shifted.byteOffset % 2, 1);
    const n = numelOf(t);
    const out = new Float32Array(n + 5).fill(7);
    const got = dequantize(t.type, shifted, n, out);
    assert.equal(got.length, n);
    assert.equal(got.buffer, out.buffer);
    assertSameValues(got, refValues(name), `${name} at odd offset`);
    assert.equal(out[n], 7, 'wrote past numel');
  });
}

test('ggmlType agrees with gguf-py GGML_QUANT_SIZES for every type id', () => {
  const ids = header.metadata.get('ggml_quants.type_ids') as number[];
  const names = header.metadata.get('ggml_quants.type_names') as string[];
  const elems = header.metadata.get('ggml_quants.type_block_elems') as number[];
  const bytes = header.metadata.get('ggml_quants.type_block_bytes') as number[];
  assert.ok(ids.length >= 34, 'fixture lists the type table'); // gguf 0.19 knows 34 ids
  for (let i = 0; i < ids.length; i++) {
    const info = ggmlType(ids[i]);
    assert.ok(info, `ggmlType(${ids[i]}) (${names[i]}) is missing`);
    assert.deepEqual(
      { id: info.id, name: info.name, blockElems: info.blockElems, blockBytes: info.blockBytes, supported: info.supported },
      { id: ids[i], name: names[i], blockElems: elems[i], blockBytes: bytes[i], supported: SUPPORTED.includes(names[i]) },
    );
  }
  for (const removed of [4, 5, 31, 32, 33, 36, 37, 38, 1000]) assert.equal(ggmlType(removed), undefined);
});

test('ggmlTensorBytes: size per type, and a numel that is not whole blocks throws', () => {
  const expected: [string, number, number][] = [
    ['F32', 512, 2048], ['F16', 512, 1024], ['BF16', 512, 1024], ['Q8_0', 512, 544], ['Q4_0', 512, 288],
    ['Q4_1', 512, 320], ['Q5_0', 512, 352], ['Q5_1', 512, 384], ['Q4_K', 512, 288], ['Q5_K', 512, 352],
    ['Q6_K', 512, 420], ['Q2_K', 512, 168],
  ];
  for (const [name, numel, bytes] of expected) {
    const t = tensor(name);
    assert.equal(ggmlTensorBytes(t.type, numel), bytes, name);
  }
  assert.equal(ggmlTensorBytes(3, 0), 0);
  assert.throws(() => ggmlTensorBytes(3, 48), (e: unknown) => e instanceof GgufError && /Q4_1/.test(e.message) && /32-element/.test(e.message));
  assert.throws(() => ggmlTensorBytes(12, 128), (e: unknown) => e instanceof GgufError && /Q4_K/.test(e.message) && /256-element/.test(e.message));
  assert.throws(() => ggmlTensorBytes(0, 1.5), GgufError);
  assert.throws(() => ggmlTensorBytes(99, 32), (e: unknown) => e instanceof GgufError && /unknown ggml type id 99/.test(e.message));
  assert.throws(() => ggmlTensorBytes(31, 32), (e: unknown) => e instanceof GgufError && /Q4_0_4_4/.test(e.message) && /removed/.test(e.message));
});

test('dequantize of an unsupported type names it and lists the supported ones', () => {
  const t = tensor('Q2_K');
  assert.throws(() => dequantize(t.type, rawBytes(t), numelOf(t)), (e: unknown) => {
    assert.ok(e instanceof GgufError);
    assert.match(e.message, /Q2_K/);
    for (const name of SUPPORTED) assert.ok(e.message.includes(name), `message lists ${name}: ${e.message}`);
    return true;
  });
});

test('dequantize rejects a source of the wrong size and a short output', () => {
  const t = tensor('Q4_1');
  const raw = rawBytes(t);
  assert.throws(() => dequantize(t.type, raw.subarray(0, raw.length - 1), numelOf(t)), (e: unknown) => e instanceof GgufError && /truncated/.test(e.message));
  assert.throws(() => dequantize(t.type, raw, numelOf(t), new Float32Array(numelOf(t) - 1)), RangeError);
});

/** f16 bits -> number straight from the IEEE definition, independent of the module's table. */
function f16Formula(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

test('about 1M Q4_1 elements dequantize, matching the block formula', () => {
  const blocks = 1 << 15; // 32768 blocks x 32 = 1,048,576 elements
  const src = new Uint8Array(blocks * 20);
  let seed = 12345;
  for (let i = 0; i < src.length; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    src[i] = seed >>> 24;
  }
  for (let b = 0; b < blocks; b++) {
    // d and m: finite halves with exponents 1..30 (no inf/NaN), random mantissa and sign.
    for (const at of [b * 20, b * 20 + 2]) src[at + 1] = (src[at + 1] & 0x83) | ((1 + (src[at + 1] % 29)) << 2);
  }
  const n = blocks * 32;
  const out = dequantize(3, src, n);
  assert.equal(out.length, n);
  for (let i = 0; i < n; i++) if (!Number.isFinite(out[i])) assert.fail(`element ${i} is ${out[i]}`);
  for (const b of [0, 1, 777, blocks - 1]) {
    const p = b * 20;
    const d = f16Formula(src[p] | (src[p + 1] << 8));
    const m = f16Formula(src[p + 2] | (src[p + 3] << 8));
    for (let j = 0; j < 32; j++) {
      const q = j < 16 ? src[p + 4 + j] & 15 : src[p + 4 + j - 16] >> 4;
      assert.equal(out[b * 32 + j], Math.fround(q * d + m), `block ${b} element ${j}`);
    }
  }
});

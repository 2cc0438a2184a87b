import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openSafetensors, writeSafetensors, f32ToF16Bits, f32ToBf16Bits, f16ToF32 } from '../../src/model/safetensors.ts';
import { SafetensorsError } from '../../src/errors.ts';

const tmp = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'st-'));

/** Values exactly representable in f16 and bf16 (small integers and dyadic fractions). */
const exact = new Float32Array([0, -0, 1, -2, 0.5, 0.25, 3, -96, 1024, 0.125, 7, -0.375]);

test('roundtrips f32, f16 and bf16 tensors with shapes and names', async () => {
  const dir = tmp();
  const rnd = new Float32Array(30).map((_, i) => Math.sin(i * 1.7) * 3);
  writeSafetensors(path.join(dir, 'model.safetensors'), [
    { name: 'a.f32', dtype: 'F32', shape: [5, 6], data: rnd },
    { name: 'b.f16', dtype: 'F16', shape: [3, 4], data: exact },
    { name: 'c.bf16', dtype: 'BF16', shape: [12], data: exact },
    { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
  ]);
  const st = await openSafetensors(dir);
  assert.deepEqual(st.names().sort(), ['a.f32', 'b.f16', 'c.bf16', 'empty']);
  assert.deepEqual(st.info('b.f16'), { dtype: 'F16', shape: [3, 4] });
  assert.deepEqual(st.readF32('a.f32'), rnd);
  assert.deepEqual(st.readF32('b.f16'), exact);
  assert.deepEqual(st.readF32('c.bf16'), exact);
  assert.equal(st.readF32('empty').length, 0);
  assert.throws(() => st.readF32('nope'), SafetensorsError);
  st.close();
});

test('f32 -> f16 rounds to nearest even, handles subnormals, overflow and NaN', () => {
  // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1).
  assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00);
  // 1 + 3*2^-11 is halfway between 1+2^-10 (odd) and 1+2^-9 (even): rounds up.
  assert.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02);
  assert.equal(f32ToF16Bits(1 + 2 ** -11 + 2 ** -20), 0x3c01);
  assert.equal(f32ToF16Bits(65504), 0x7bff);
  assert.equal(f32ToF16Bits(65520), 0x7c00); // halfway to the next binade: rounds to infinity
  assert.equal(f32ToF16Bits(-1e9), 0xfc00);
  assert.equal(f32ToF16Bits(2 ** -24), 0x0001); // smallest subnormal
  assert.equal(f32ToF16Bits(2 ** -25), 0x0000); // tie with zero goes to even (zero)
  assert.equal(f32ToF16Bits(3 * 2 ** -25), 0x0002);
  assert.equal(f32ToF16Bits(2 ** -14 - 2 ** -25), 0x0400); // rounds up into the smallest normal
  assert.ok(Number.isNaN(f16ToF32(new Uint16Array([f32ToF16Bits(NaN)]))[0]));
  // Every finite half value survives f16 -> f32 -> f16.
  const all = new Uint16Array(65536).map((_, i) => i);
  const back = f16ToF32(all);
  for (let h = 0; h < 65536; h++) {
    if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff)) continue; // NaN payloads
    assert.equal(f32ToF16Bits(back[h]), h, `half 0x${h.toString(16)}`);
  }
});

test('f32 -> bf16 rounds to nearest even', () => {
  assert.equal(f32ToBf16Bits(1), 0x3f80);
  assert.equal(f32ToBf16Bits(1 + 2 ** -8), 0x3f80); // tie, even stays
  assert.equal(f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82); // tie, odd rounds up
  assert.equal(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -20), 0x3f81);
  assert.equal(f32ToBf16Bits(-Infinity), 0xff80);
  assert.equal(f32ToBf16Bits(NaN) & 0x7fc0, 0x7fc0);
});

test('reads sharded checkpoints through model.safetensors.index.json', async () => {
  const dir = tmp();
  writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), [{ name: 'x', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }]);
  writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), [{ name: 'y', dtype: 'BF16', shape: [1], data: new Float32Array([3]) }]);
  const index = { metadata: {}, weight_map: { x: 'model-00001-of-00002.safetensors', y: 'model-00002-of-00002.safetensors' } };
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
  const st = await openSafetensors(dir);
  assert.deepEqual(Array.from(st.readF32('x')), [1, 2]);
  assert.deepEqual(Array.from(st.readF32('y')), [3]);
  st.close();

  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ...index.weight_map, z: 'model-00003-of-00002.safetensors' } }));
  await assert.rejects(openSafetensors(dir), (e: unknown) => e instanceof SafetensorsError && /model-00003-of-00002.safetensors.*missing/.test(e.message));
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ...index.weight_map, z: 'model-00001-of-00002.safetensors' } }));
  await assert.rejects(openSafetensors(dir), (e: unknown) => e instanceof SafetensorsError && /tensor z/.test(e.message));
});

/** A file whose header is `header` (serialized as given) followed by `dataBytes` zero bytes. */
function rawFile(dir: string, header: string, dataBytes: number, lengthOverride?: bigint): void {
  const h = Buffer.from(header, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(h.length));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), Buffer.concat([len, h, Buffer.alloc(dataBytes)]));
}

const corruptions: [string, (dir: string) => void, RegExp][] = [
  ['header length past end of file', (d) => rawFile(d, '{}', 0, 1000n), /header length 1000 runs past the end/],
  ['huge header length', (d) => rawFile(d, '{}', 0, 0xffffffffffffn), /runs past the end/],
  ['file shorter than 8 bytes', (d) => fs.writeFileSync(path.join(d, 'model.safetensors'), Buffer.alloc(3)), /too short/],
  ['invalid JSON header', (d) => rawFile(d, '{"a": ', 0), /not valid JSON/],
  ['header not an object', (d) => rawFile(d, '[1,2]', 0), /not a JSON object/],
  ['unsupported dtype', (d) => rawFile(d, JSON.stringify({ t: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }), 8), /dtype "I64"; supported/],
  ['offsets beyond data', (d) => rawFile(d, JSON.stringify({ t: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }), 8), /outside the 8 data bytes/],
  ['offsets reversed', (d) => rawFile(d, JSON.stringify({ t: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } }), 8), /data_offsets \[8, 4\]/],
  ['size not matching shape', (d) => rawFile(d, JSON.stringify({ t: { dtype: 'F16', shape: [3], data_offsets: [0, 8] } }), 8), /spans 8 bytes but shape \[3\] of F16 needs 6/],
  ['bad shape', (d) => rawFile(d, JSON.stringify({ t: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }), 4), /invalid shape/],
  ['missing offsets', (d) => rawFile(d, JSON.stringify({ t: { dtype: 'F32', shape: [1] } }), 4), /invalid data_offsets/],
  ['no weights at all', () => {}, /no model.safetensors/],
];

for (const [name, make, message] of corruptions) {
  test(`corrupt safetensors: ${name} -> SafetensorsError`, async () => {
    const dir = tmp();
    make(dir);
    await assert.rejects(openSafetensors(dir), (e: unknown) => {
      assert.ok(e instanceof SafetensorsError, `got ${String(e)}`);
      assert.match(e.message, message);
      assert.ok(!e.message.includes('\n'), 'one-line message');
      return true;
    });
  });
}

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readGgufHeader, GgufValueType as T } from '../../src/model/gguf-reader.ts';
import { editGguf } from '../helpers/gguf-edit.ts';

/** Header values are read through a 1 MiB window; a value straddling its edge must read right. */
test('header values that straddle the reader\'s 1 MiB window read correctly', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rkv-gguf-reader-'));
  try {
    const base = path.join(dir, 'base.gguf');
    // The smallest valid file: no tensors, one key.
    editGguf(path.join(import.meta.dirname, '..', 'fixtures', 'ggml-quants.gguf'), base, {});
    const h0 = readGgufHeader(base);
    // A long string pushes the next keys (a u64 and a string's u64 length) across byte 1 MiB;
    // 16 shifts put every byte of the 8-byte fields on the edge once.
    for (let shift = 0; shift < 16; shift++) {
      const file = path.join(dir, `edge${shift}.gguf`);
      editGguf(base, file, {
        set: {
          'test.padding': { type: T.STRING, value: 'x'.repeat((1 << 20) - 64 + shift) },
          'test.u64': { type: T.U64, value: 123456789012 },
          'test.after': { type: T.STRING, value: 'after the edge' },
          'test.i64': { type: T.I64, value: -42 },
        },
      });
      const h = readGgufHeader(file);
      assert.equal(h.metadata.get('test.u64'), 123456789012, `shift ${shift}`);
      assert.equal(h.metadata.get('test.after'), 'after the edge', `shift ${shift}`);
      assert.equal(h.metadata.get('test.i64'), -42, `shift ${shift}`);
      assert.equal(h.tensors.length, h0.tensors.length);
      assert.deepEqual(h.tensors.map((t) => t.name), h0.tensors.map((t) => t.name));
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

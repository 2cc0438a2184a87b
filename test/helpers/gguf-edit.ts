/**
 * Rewrites a GGUF file with edits to its header (metadata values, tensor types and offsets,
 * version, magic), copying the tensor data as it is: the raw material of bad-input tests.
 */
import * as fs from 'node:fs';
import { readGgufHeader, GgufValueType as T, type GgufValue, type GgufTensorInfo } from '../../src/model/gguf-reader.ts';

export interface GgufEdits {
  magic?: number;
  version?: number;
  set?: Record<string, GgufValue>;
  drop?: string[];
  tensor?: (t: GgufTensorInfo) => GgufTensorInfo;
}

function scalar(parts: Buffer[], type: number, v: unknown): void {
  const b = Buffer.alloc(8);
  switch (type) {
    case T.U8: case T.BOOL: parts.push(Buffer.from([type === T.BOOL ? (v ? 1 : 0) : (v as number)])); return;
    case T.I8: b.writeInt8(v as number); parts.push(b.subarray(0, 1)); return;
    case T.U16: b.writeUInt16LE(v as number); parts.push(b.subarray(0, 2)); return;
    case T.I16: b.writeInt16LE(v as number); parts.push(b.subarray(0, 2)); return;
    case T.U32: b.writeUInt32LE(v as number); parts.push(b.subarray(0, 4)); return;
    case T.I32: b.writeInt32LE(v as number); parts.push(b.subarray(0, 4)); return;
    case T.F32: b.writeFloatLE(v as number); parts.push(b.subarray(0, 4)); return;
    case T.U64: b.writeBigUInt64LE(BigInt(v as number)); parts.push(b); return;
    case T.I64: b.writeBigInt64LE(BigInt(v as number)); parts.push(b); return;
    case T.F64: b.writeDoubleLE(v as number); parts.push(b); return;
    case T.STRING: {
      const s = Buffer.from(v as string, 'utf8');
      scalar(parts, T.U64, s.length);
      parts.push(s);
      return;
    }
    default: throw new Error(`cannot write GGUF type ${type}`);
  }
}

export function editGguf(src: string, dst: string, e: GgufEdits): void {
  const h = readGgufHeader(src);
  const meta = new Map(h.typed);
  for (const k of e.drop ?? []) meta.delete(k);
  for (const [k, v] of Object.entries(e.set ?? {})) meta.set(k, v);
  const tensors = h.tensors.map((t) => (e.tensor ? e.tensor({ ...t, dims: t.dims.slice() }) : t));
  const parts: Buffer[] = [];
  scalar(parts, T.U32, e.magic ?? 0x46554747);
  scalar(parts, T.U32, e.version ?? h.version);
  scalar(parts, T.U64, tensors.length);
  scalar(parts, T.U64, meta.size);
  for (const [k, v] of meta) {
    scalar(parts, T.STRING, k);
    scalar(parts, T.U32, v.type);
    if (v.type === T.ARRAY) {
      const arr = v.value as unknown[];
      scalar(parts, T.U32, v.elemType!);
      scalar(parts, T.U64, arr.length);
      for (const x of arr) scalar(parts, v.elemType!, x);
    } else {
      scalar(parts, v.type, v.value);
    }
  }
  for (const t of tensors) {
    scalar(parts, T.STRING, t.name);
    scalar(parts, T.U32, t.dims.length);
    for (const d of t.dims) scalar(parts, T.U64, d);
    scalar(parts, T.U32, t.type);
    scalar(parts, T.U64, t.offset);
  }
  let header = Buffer.concat(parts);
  const padded = Math.ceil(header.length / h.alignment) * h.alignment;
  header = Buffer.concat([header, Buffer.alloc(padded - header.length)]);
  const data = fs.readFileSync(src).subarray(h.dataOffset);
  fs.writeFileSync(dst, Buffer.concat([header, data]));
}

/**
 * safetensors reader (single file or sharded via model.safetensors.index.json) and writer.
 * Layout: u64 little-endian header length N, N bytes of JSON header, then the raw tensor bytes;
 * data_offsets in the header are relative to the first byte after the header.
 * Tensors are read on demand with positioned reads so multi-GB files never sit in one Buffer.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SafetensorsError } from '../errors.ts';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16';

export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
}

export interface TensorSource {
  names(): string[];
  /** dtype: a safetensors dtype, or a ggml type name for GGUF files. */
  info(name: string): { dtype: string; shape: number[] };
  /** The tensor converted to f32, row-major as stored. */
  readF32(name: string): Float32Array;
  /**
   * Rows [row0, row0 + rows) of a 2-D tensor (shape [N, K]) converted to f32 into `out` (rows * K
   * floats, e.g. a view of wasm memory), so a large tensor loads a slice at a time with no copy of
   * it in JS; false (nothing written) where the source can only give the whole tensor.
   */
  readF32Rows?(name: string, row0: number, rows: number, out: Float32Array): boolean;
  close(): void;
}

const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };

/** A header larger than this is certainly corrupt (real ones are a few hundred KB). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

interface Entry extends TensorInfo {
  file: ShardFile;
  /** Absolute byte position of the tensor in its file. */
  start: number;
  byteLength: number;
}

interface ShardFile {
  path: string;
  fd: number;
}

function isDtype(v: unknown): v is SafetensorsDtype {
  return v === 'F32' || v === 'F16' || v === 'BF16';
}

function numel(shape: number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Parses and validates one file's header; returns its entries in header order. */
function readHeader(file: ShardFile): Map<string, Entry> {
  const fileBytes = fs.fstatSync(file.fd).size;
  const name = path.basename(file.path);
  if (fileBytes < 8) throw new SafetensorsError(`${name}: file is ${fileBytes} bytes, too short for a safetensors header`);
  const lenBuf = Buffer.alloc(8);
  fs.readSync(file.fd, lenBuf, 0, 8, 0);
  const headerLen = lenBuf.readBigUInt64LE(0);
  if (headerLen > BigInt(fileBytes - 8) || headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(`${name}: header length ${headerLen} runs past the end of the ${fileBytes}-byte file; the file is truncated or not safetensors`);
  }
  const n = Number(headerLen);
  const headerBuf = Buffer.alloc(n);
  fs.readSync(file.fd, headerBuf, 0, n, 8);
  let header: unknown;
  try {
    header = JSON.parse(headerBuf.toString('utf8'));
  } catch (e) {
    throw new SafetensorsError(`${name}: header is not valid JSON (${(e as Error).message}); the file is corrupt`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new SafetensorsError(`${name}: header is not a JSON object; the file is corrupt`);
  }
  const dataStart = 8 + n;
  const dataBytes = fileBytes - dataStart;
  const entries = new Map<string, Entry>();
  for (const [tensor, raw] of Object.entries(header as Record<string, unknown>)) {
    if (tensor === '__metadata__') continue;
    if (typeof raw !== 'object' || raw === null) throw new SafetensorsError(`${name}: header entry for ${tensor} is not an object`);
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (!isDtype(dtype)) {
      throw new SafetensorsError(`${name}: tensor ${tensor} has dtype ${JSON.stringify(dtype)}; supported: F32, F16, BF16`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new SafetensorsError(`${name}: tensor ${tensor} has an invalid shape ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0)) {
      throw new SafetensorsError(`${name}: tensor ${tensor} has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataBytes) {
      throw new SafetensorsError(`${name}: tensor ${tensor} data_offsets [${begin}, ${end}] lie outside the ${dataBytes} data bytes; the file is truncated or corrupt`);
    }
    const expected = numel(shape as number[]) * DTYPE_BYTES[dtype];
    if (end - begin !== expected) {
      throw new SafetensorsError(`${name}: tensor ${tensor} spans ${end - begin} bytes but shape ${JSON.stringify(shape)} of ${dtype} needs ${expected}`);
    }
    entries.set(tensor, { dtype, shape: (shape as number[]).slice(), file, start: dataStart + begin, byteLength: expected });
  }
  return entries;
}

/** Opens model.safetensors, or every shard named by model.safetensors.index.json, in `dir`. */
export async function openSafetensors(dir: string): Promise<TensorSource> {
  const single = path.join(dir, 'model.safetensors');
  const indexPath = path.join(dir, 'model.safetensors.index.json');
  const files: ShardFile[] = [];
  const entries = new Map<string, Entry>();
  const openFile = (p: string): ShardFile => {
    let fd: number;
    try {
      fd = fs.openSync(p, 'r');
    } catch (e) {
      throw new SafetensorsError(`cannot open ${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const f = { path: p, fd };
    files.push(f);
    return f;
  };
  try {
    if (fs.existsSync(indexPath)) {
      let index: unknown;
      try {
        index = JSON.parse(await fs.promises.readFile(indexPath, 'utf8'));
      } catch (e) {
        throw new SafetensorsError(`${indexPath} is not valid JSON (${(e as Error).message})`);
      }
      const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
      if (typeof weightMap !== 'object' || weightMap === null) {
        throw new SafetensorsError(`${indexPath} has no "weight_map" object`);
      }
      const shards = new Map<string, Map<string, Entry>>();
      for (const [tensor, shardName] of Object.entries(weightMap as Record<string, unknown>)) {
        if (typeof shardName !== 'string') throw new SafetensorsError(`${indexPath}: weight_map entry for ${tensor} is not a file name`);
        let shard = shards.get(shardName);
        if (!shard) {
          const shardPath = path.join(dir, shardName);
          if (!fs.existsSync(shardPath)) {
            throw new SafetensorsError(`shard ${shardName} listed in model.safetensors.index.json is missing from ${dir}`);
          }
          shard = readHeader(openFile(shardPath));
          shards.set(shardName, shard);
        }
        const entry = shard.get(tensor);
        if (!entry) throw new SafetensorsError(`tensor ${tensor} is listed in the index under ${shardName} but that shard does not contain it`);
        entries.set(tensor, entry);
      }
    } else if (fs.existsSync(single)) {
      for (const [k, v] of readHeader(openFile(single))) entries.set(k, v);
    } else {
      throw new SafetensorsError(`no model.safetensors or model.safetensors.index.json in ${dir}`);
    }
  } catch (e) {
    for (const f of files) fs.closeSync(f.fd);
    throw e;
  }

  let closed = false;
  /** Reused buffer of 16-bit values for readF32Rows. */
  let half = new Uint16Array(0);
  const get = (name: string): Entry => {
    if (closed) throw new SafetensorsError(`safetensors in ${dir} already closed (reading ${name})`);
    const e = entries.get(name);
    if (!e) throw new SafetensorsError(`tensor ${name} not found in the safetensors of ${dir}`);
    return e;
  };
  return {
    names: () => [...entries.keys()],
    info: (name) => {
      const e = get(name);
      return { dtype: e.dtype, shape: e.shape.slice() };
    },
    readF32: (name) => readEntryF32(get(name)),
    readF32Rows: (name, row0, rows, out) => {
      const e = get(name);
      if (e.shape.length !== 2) return false;
      const K = e.shape[1]!;
      if (row0 < 0 || rows < 0 || row0 + rows > e.shape[0]! || out.length !== rows * K) {
        throw new SafetensorsError(`rows ${row0}..${row0 + rows} of tensor ${name} [${e.shape.join(', ')}] into ${out.length} floats: out of range`);
      }
      const start = e.start + row0 * K * DTYPE_BYTES[e.dtype];
      if (e.dtype === 'F32') {
        readFully(e.file.fd, new Uint8Array(out.buffer, out.byteOffset, out.byteLength), start);
        return true;
      }
      if (half.length < out.length) half = new Uint16Array(out.length);
      const h = half.subarray(0, out.length);
      readFully(e.file.fd, new Uint8Array(h.buffer, 0, h.byteLength), start);
      out.set(e.dtype === 'BF16' ? bf16ToF32(h) : f16ToF32(h));
      return true;
    },
    close: () => {
      if (closed) return;
      closed = true;
      for (const f of files) fs.closeSync(f.fd);
    },
  };
}

/** Positioned reads in chunks: readSync caps one call at 2 GiB. */
function readFully(fd: number, into: Uint8Array, position: number): void {
  const CHUNK_BYTES = 1 << 30;
  let done = 0;
  while (done < into.length) {
    const want = Math.min(CHUNK_BYTES, into.length - done);
    const got = fs.readSync(fd, into, done, want, position + done);
    if (got <= 0) throw new SafetensorsError(`unexpected end of file while reading tensor data at byte ${position + done}`);
    done += got;
  }
}

function readEntryF32(e: Entry): Float32Array {
  const n = e.byteLength / DTYPE_BYTES[e.dtype];
  if (e.dtype === 'F32') {
    const out = new Float32Array(n);
    readFully(e.file.fd, new Uint8Array(out.buffer), e.start);
    return out;
  }
  const half = new Uint16Array(n);
  readFully(e.file.fd, new Uint8Array(half.buffer), e.start);
  return e.dtype === 'BF16' ? bf16ToF32(half) : f16ToF32(half);
}

export function bf16ToF32(src: Uint16Array): Float32Array {
  const bits = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return new Float32Array(bits.buffer);
}

let f16Table: Float32Array | null = null;

/** All 65536 half values, built once: a table lookup beats bit twiddling per element. */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) t[h] = sign * mant * 2 ** -24;
    else if (exp === 31) t[h] = mant ? NaN : sign * Infinity;
    else t[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  f16Table = t;
  return t;
}

export function f16ToF32(src: Uint16Array): Float32Array {
  const t = halfTable();
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]];
  return out;
}

const convF32 = new Float32Array(1);
const convU32 = new Uint32Array(convF32.buffer);

/** IEEE half bits of x, round to nearest even, overflow to infinity. */
export function f32ToF16Bits(x: number): number {
  convF32[0] = x;
  const u = convU32[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Result is subnormal (or rounds up to the smallest normal); below 2^-25 it rounds to zero.
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa bumps the exponent, reaching infinity correctly at the top.
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

/** bfloat16 bits of x, round to nearest even; NaN stays a quiet NaN. */
export function f32ToBf16Bits(x: number): number {
  convF32[0] = x;
  const u = convU32[0];
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff)) return ((u >>> 16) & 0x8000) | 0x7fc0;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  data: Float32Array;
}

function encodeTensor(t: TensorToWrite): Uint8Array {
  if (t.dtype === 'F32') return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Uint16Array(t.data.length);
  const conv = t.dtype === 'F16' ? f32ToF16Bits : f32ToBf16Bits;
  for (let i = 0; i < t.data.length; i++) out[i] = conv(t.data[i]);
  return new Uint8Array(out.buffer);
}

/** Writes one safetensors file; f32 data is converted to the requested dtype. */
export function writeSafetensors(filePath: string, tensors: TensorToWrite[]): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const t of tensors) {
    if (!isDtype(t.dtype)) throw new SafetensorsError(`cannot write tensor ${t.name}: dtype ${String(t.dtype)} unsupported`);
    if (numel(t.shape) !== t.data.length) {
      throw new SafetensorsError(`cannot write tensor ${t.name}: shape ${JSON.stringify(t.shape)} holds ${numel(t.shape)} values, data has ${t.data.length}`);
    }
    if (t.name in header) throw new SafetensorsError(`cannot write tensor ${t.name}: duplicate name`);
    const bytes = t.data.length * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad with spaces so tensor data starts 8-byte aligned, as the reference writer does.
  json += ' '.repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  const fd = fs.openSync(filePath, 'w');
  try {
    fs.writeSync(fd, len);
    fs.writeSync(fd, headerBytes);
    for (const t of tensors) {
      const bytes = encodeTensor(t);
      let done = 0;
      while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done);
    }
  } finally {
    fs.closeSync(fd);
  }
}

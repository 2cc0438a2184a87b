/**
 * GGUF reader: header (metadata key/values, tensor infos) validated against the file, and tensors
 * read one at a time with positioned reads and dequantized to f32, so loading never holds more
 * than one tensor beyond the final weights.
 * Layout (v2/v3): magic "GGUF", u32 version, u64 tensor count, u64 metadata count, metadata
 * (string key, u32 type, value), tensor infos (name, u32 n_dims, u64 dims innermost first, u32
 * ggml type, u64 offset relative to the data section), padding to general.alignment, data.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GgufError } from '../errors.ts';
import { dequantize, ggmlTensorBytes, ggmlType } from './ggml-quants.ts';
import type { TensorSource } from './safetensors.ts';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as little-endian u32
const DEFAULT_ALIGNMENT_BYTES = 32;

/** GGUF metadata value types. */
export const enum GgufValueType {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
}

const TYPE_NAMES = ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'string', 'array', 'u64', 'i64', 'f64'];

/** A metadata value with the type it was stored as (so readers can reject wrong types). */
export interface GgufValue {
  type: GgufValueType;
  /** For arrays: the element type. */
  elemType?: GgufValueType;
  value: unknown;
}

export interface GgufTensorInfo {
  name: string;
  /** Innermost dimension first, as stored. */
  dims: number[];
  type: number;
  /** Offset relative to the data section. */
  offset: number;
}

export interface GgufHeader {
  version: number;
  /** Values only (convenient for printing); `typed` keeps the stored types. */
  metadata: Map<string, unknown>;
  typed: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  /** Absolute file offset of the tensor data section. */
  dataOffset: number;
  alignment: number;
  fileBytes: number;
}

/** Arrays in real files reach ~150K entries (vocabularies); far beyond that the file is corrupt. */
const MAX_ARRAY_ELEMS = 1 << 24;
const MAX_COUNT = 1 << 20;

/** Sequential reader over a file descriptor with a refilled window, for headers of any size. */
class ByteReader {
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;
  constructor(private readonly fd: number, readonly fileBytes: number, private readonly where: string) {}
  /** Makes n bytes at pos available and returns their index in buf (read buf only after calling). */
  private need(n: number): number {
    if (this.pos + n > this.fileBytes) {
      throw new GgufError(`${this.where}: the file ends inside its header (needs byte ${this.pos + n} of ${this.fileBytes}); it is truncated or not a GGUF file`);
    }
    if (this.pos < this.bufStart || this.pos + n > this.bufStart + this.buf.length) {
      this.buf = Buffer.alloc(Math.max(n, 1 << 20));
      const got = fs.readSync(this.fd, this.buf, 0, this.buf.length, this.pos);
      this.buf = this.buf.subarray(0, got);
      this.bufStart = this.pos;
    }
    const at = this.pos - this.bufStart;
    this.pos += n;
    return at;
  }
  u8(): number { const at = this.need(1); return this.buf[at]!; }
  i8(): number { const at = this.need(1); return this.buf.readInt8(at); }
  u16(): number { const at = this.need(2); return this.buf.readUInt16LE(at); }
  i16(): number { const at = this.need(2); return this.buf.readInt16LE(at); }
  u32(): number { const at = this.need(4); return this.buf.readUInt32LE(at); }
  i32(): number { const at = this.need(4); return this.buf.readInt32LE(at); }
  f32(): number { const at = this.need(4); return this.buf.readFloatLE(at); }
  f64(): number { const at = this.need(8); return this.buf.readDoubleLE(at); }
  // need() may swap in a new window, so it runs before this.buf is read.
  u64(): number {
    const at = this.need(8);
    const v = this.buf.readBigUInt64LE(at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufError(`${this.where}: a u64 in the header (${v}) is out of range; the file is corrupt`);
    return Number(v);
  }
  i64(): number { const at = this.need(8); return Number(this.buf.readBigInt64LE(at)); }
  str(): string {
    const n = this.u64();
    if (this.pos + n > this.fileBytes) throw new GgufError(`${this.where}: a string of ${n} bytes at byte ${this.pos} runs past the end of the file; it is truncated or corrupt`);
    const at = this.need(n);
    return this.buf.toString('utf8', at, at + n);
  }
}

function readScalar(r: ByteReader, type: number, where: string): unknown {
  switch (type) {
    case GgufValueType.U8: return r.u8();
    case GgufValueType.I8: return r.i8();
    case GgufValueType.U16: return r.u16();
    case GgufValueType.I16: return r.i16();
    case GgufValueType.U32: return r.u32();
    case GgufValueType.I32: return r.i32();
    case GgufValueType.F32: return r.f32();
    case GgufValueType.BOOL: return r.u8() !== 0;
    case GgufValueType.STRING: return r.str();
    case GgufValueType.U64: return r.u64();
    case GgufValueType.I64: return r.i64();
    case GgufValueType.F64: return r.f64();
    default:
      throw new GgufError(`${where}: metadata value type ${type} is unknown; the file is corrupt or from a newer GGUF version`);
  }
}

function readValue(r: ByteReader, type: number, where: string): GgufValue {
  if (type !== GgufValueType.ARRAY) return { type, value: readScalar(r, type, where) };
  const elemType = r.u32();
  const n = r.u64();
  if (n > MAX_ARRAY_ELEMS) throw new GgufError(`${where}: an array of ${n} elements is implausible; the file is corrupt`);
  if (elemType === GgufValueType.ARRAY) throw new GgufError(`${where}: nested arrays are not supported`);
  const out: unknown[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = readScalar(r, elemType, where);
  return { type, elemType, value: out };
}

/** The name of a stored type, for messages ("u32", "array of string"). */
export function ggufTypeName(v: GgufValue): string {
  const base = TYPE_NAMES[v.type] ?? `type ${v.type}`;
  return v.type === GgufValueType.ARRAY ? `array of ${TYPE_NAMES[v.elemType ?? -1] ?? 'unknown'}` : base;
}

/** Reads and validates the metadata and tensor infos of a GGUF file (not the tensor data). */
export function readGgufHeader(filePath: string): GgufHeader {
  const where = path.basename(filePath);
  let fd: number;
  try {
    fd = fs.openSync(filePath, 'r');
  } catch (e) {
    throw new GgufError(`cannot open ${filePath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const fileBytes = fs.fstatSync(fd).size;
    const r = new ByteReader(fd, fileBytes, where);
    if (fileBytes < 4 || r.u32() !== GGUF_MAGIC) throw new GgufError(`${filePath} is not a GGUF file (its first bytes are not "GGUF")`);
    const version = r.u32();
    if (version !== 2 && version !== 3) {
      throw new GgufError(`${where}: GGUF version ${version} is not supported (versions 2 and 3 are); convert it again with a current llama.cpp`);
    }
    const tensorCount = r.u64();
    const kvCount = r.u64();
    if (tensorCount > MAX_COUNT || kvCount > MAX_COUNT) {
      throw new GgufError(`${where}: header claims ${tensorCount} tensors and ${kvCount} metadata keys; the file is corrupt`);
    }
    const typed = new Map<string, GgufValue>();
    for (let i = 0; i < kvCount; i++) {
      const key = r.str();
      typed.set(key, readValue(r, r.u32(), `${where}: metadata ${key}`));
    }
    const tensors: GgufTensorInfo[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < tensorCount; i++) {
      const name = r.str();
      const nDims = r.u32();
      if (nDims < 1 || nDims > 4) throw new GgufError(`${where}: tensor ${name} has ${nDims} dimensions (1 to 4 are possible); the file is corrupt`);
      const dims: number[] = [];
      for (let d = 0; d < nDims; d++) dims.push(r.u64());
      const type = r.u32();
      const offset = r.u64();
      if (seen.has(name)) throw new GgufError(`${where}: tensor ${name} appears twice; the file is corrupt`);
      seen.add(name);
      tensors.push({ name, dims, type, offset });
    }
    const alignValue = typed.get('general.alignment');
    let alignment = DEFAULT_ALIGNMENT_BYTES;
    if (alignValue !== undefined) {
      const a = alignValue.value;
      if (alignValue.type !== GgufValueType.U32 || typeof a !== 'number' || a === 0 || (a & (a - 1)) !== 0) {
        throw new GgufError(`${where}: general.alignment must be a power of two stored as u32, got ${ggufTypeName(alignValue)} ${String(a)}`);
      }
      alignment = a;
    }
    const dataOffset = Math.ceil(r.pos / alignment) * alignment;
    const dataBytes = fileBytes - dataOffset;
    for (const t of tensors) {
      const info = ggmlType(t.type);
      if (!info) {
        // Types ggml has removed are named by ggmlTensorBytes' message; others are unknown.
        try {
          ggmlTensorBytes(t.type, t.dims.reduce((a, b) => a * b, 1));
        } catch (e) {
          throw new GgufError(`${where}: tensor ${t.name}: ${(e as Error).message}`);
        }
        throw new GgufError(`${where}: tensor ${t.name} has ggml type ${t.type}, which is unknown; the file is corrupt or needs a newer engine`);
      }
      const numel = t.dims.reduce((a, b) => a * b, 1);
      if (t.dims[0]! % info.blockElems !== 0) {
        throw new GgufError(`${where}: tensor ${t.name} (${info.name}) has rows of ${t.dims[0]} elements, not a multiple of its block size ${info.blockElems}`);
      }
      const bytes = ggmlTensorBytes(t.type, numel);
      if (t.offset % alignment !== 0) throw new GgufError(`${where}: tensor ${t.name} starts at offset ${t.offset}, not aligned to ${alignment}; the file is corrupt`);
      if (t.offset + bytes > dataBytes) {
        throw new GgufError(`${where}: tensor ${t.name} needs bytes ${t.offset}..${t.offset + bytes} of the data section but the file holds ${Math.max(0, dataBytes)}; it is truncated or corrupt (download it again)`);
      }
    }
    const metadata = new Map<string, unknown>();
    for (const [k, v] of typed) metadata.set(k, v.value);
    return { version, metadata, typed, tensors, dataOffset, alignment, fileBytes };
  } finally {
    fs.closeSync(fd);
  }
}

/** Dimensions as a row-major shape (outermost first), as safetensors and our loaders use. */
export function ggufShape(t: GgufTensorInfo): number[] {
  return t.dims.slice().reverse();
}

/**
 * llama.cpp's converter reorders each head's Q/K rows for adjacent-pair RoPE:
 * HF row h*d + j*(d/2) + i (j in {0,1}) is stored at row h*d + 2i + j. This puts them back.
 */
export function unpermuteRopeRows(data: Float32Array, numHeads: number, headDim: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  const half = headDim / 2;
  for (let h = 0; h < numHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const src = (h * headDim + 2 * i + j) * cols;
        const dst = (h * headDim + j * half + i) * cols;
        out.set(data.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

const SUPPORTED_TYPES = Array.from({ length: 64 }, (_, id) => ggmlType(id)).filter((t) => t?.supported).map((t) => t!.name);

/** GGUF tensor names -> the Hugging Face names the weight loader asks for. */
function hfName(name: string): string | null {
  const fixed: Record<string, string> = {
    'token_embd.weight': 'model.embed_tokens.weight',
    'output_norm.weight': 'model.norm.weight',
    'output.weight': 'lm_head.weight',
  };
  if (fixed[name]) return fixed[name]!;
  const m = /^blk\.(\d+)\.(\w+)\.(weight|bias)$/.exec(name);
  if (!m) return null;
  const parts: Record<string, string> = {
    attn_norm: 'input_layernorm',
    attn_q: 'self_attn.q_proj',
    attn_k: 'self_attn.k_proj',
    attn_v: 'self_attn.v_proj',
    attn_output: 'self_attn.o_proj',
    ffn_norm: 'post_attention_layernorm',
    ffn_gate: 'mlp.gate_proj',
    ffn_up: 'mlp.up_proj',
    ffn_down: 'mlp.down_proj',
  };
  const part = parts[m[2]!];
  return part ? `model.layers.${m[1]}.${part}.${m[3]}` : null;
}

export interface GgufTensorSourceOptions {
  /** Undo llama.cpp's Q/K row order (the `llama` architecture); heads per projection. */
  ropePermute?: { numHeads: number; numKvHeads: number; headDim: number };
}

/** A GGUF file's tensors under Hugging Face names, dequantized to f32 one at a time. */
export class GgufTensorSource implements TensorSource {
  private readonly byHf = new Map<string, GgufTensorInfo>();
  private fd: number | null;
  /** Reused buffer of stored bytes for readF32Rows. */
  private rowBuf = Buffer.alloc(0);

  constructor(private readonly filePath: string, readonly header: GgufHeader, private readonly opts: GgufTensorSourceOptions = {}) {
    const unsupported: string[] = [];
    for (const t of header.tensors) {
      const hf = hfName(t.name);
      if (!hf) continue;
      this.byHf.set(hf, t);
      const type = ggmlType(t.type)!;
      if (!type.supported) unsupported.push(`${t.name} (${type.name})`);
    }
    if (unsupported.length > 0) {
      const supported = SUPPORTED_TYPES.join(', ');
      throw new GgufError(`${path.basename(filePath)}: tensor type not supported: ${unsupported.slice(0, 3).join(', ')}${unsupported.length > 3 ? ` and ${unsupported.length - 3} more` : ''}; supported types: ${supported} (requantize with llama-quantize to one of them)`);
    }
    this.fd = fs.openSync(filePath, 'r');
  }

  names(): string[] {
    return [...this.byHf.keys()];
  }

  info(name: string): { dtype: string; shape: number[] } {
    const t = this.tensor(name);
    return { dtype: ggmlType(t.type)!.name, shape: ggufShape(t) };
  }

  /** The stored bytes of a tensor (GGUF name), exactly as in the file. */
  readRaw(ggufName: string): Uint8Array {
    const t = this.header.tensors.find((x) => x.name === ggufName);
    if (!t) throw new GgufError(`${path.basename(this.filePath)} has no tensor ${ggufName}`);
    return this.readBytes(t);
  }

  readF32(name: string): Float32Array {
    const t = this.tensor(name);
    const numel = t.dims.reduce((a, b) => a * b, 1);
    const data = dequantize(t.type, this.readBytes(t), numel);
    const p = this.opts.ropePermute;
    if (p && (name.includes('self_attn.q_proj') || name.includes('self_attn.k_proj'))) {
      // llama.cpp's converter reorders the rows of the Q/K weights and of their biases alike.
      const heads = name.includes('q_proj') ? p.numHeads : p.numKvHeads;
      return unpermuteRopeRows(data, heads, p.headDim, name.endsWith('.bias') ? 1 : t.dims[0]!);
    }
    return data;
  }

  readF32Rows(name: string, row0: number, rows: number, out: Float32Array): boolean {
    const t = this.tensor(name);
    const p = this.opts.ropePermute;
    // Rows that llama.cpp's converter reordered within each head are restored on the whole tensor.
    if (p && (name.includes('self_attn.q_proj') || name.includes('self_attn.k_proj'))) return false;
    if (t.dims.length !== 2) return false;
    const K = t.dims[0]!, N = t.dims[1]!;
    if (row0 < 0 || rows < 0 || row0 + rows > N || out.length !== rows * K) {
      throw new GgufError(`rows ${row0}..${row0 + rows} of ${t.name} (${N} rows of ${K}) into ${out.length} floats: out of range`);
    }
    const rowBytes = ggmlTensorBytes(t.type, K);
    const need = rows * rowBytes;
    if (this.rowBuf.length < need) this.rowBuf = Buffer.allocUnsafe(need);
    dequantize(t.type, this.readBytes(t, row0 * rowBytes, need, this.rowBuf), rows * K, out);
    return true;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }

  private tensor(name: string): GgufTensorInfo {
    const t = this.byHf.get(name);
    if (!t) throw new GgufError(`${path.basename(this.filePath)} has no tensor for ${name}`);
    return t;
  }

  /** `length` stored bytes of a tensor from byte `from` of its data (default: all of it). */
  private readBytes(t: GgufTensorInfo, from = 0, length?: number, into?: Buffer): Uint8Array {
    if (this.fd === null) throw new Error('GGUF tensor source is closed');
    const bytes = length ?? ggmlTensorBytes(t.type, t.dims.reduce((a, b) => a * b, 1));
    const buf = into ?? Buffer.allocUnsafe(bytes);
    let done = 0;
    while (done < bytes) {
      const got = fs.readSync(this.fd, buf, done, bytes - done, this.header.dataOffset + t.offset + from + done);
      if (got === 0) throw new GgufError(`${path.basename(this.filePath)}: tensor ${t.name} is cut off (the file shrank while loading)`);
      done += got;
    }
    return new Uint8Array(buf.buffer, buf.byteOffset, bytes);
  }
}

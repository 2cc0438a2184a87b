/**
 * ggml tensor types: block geometry for every type ggml knows, and dequantization to f32 for the
 * ones this engine loads.
 * Source: ggml/src/ggml-quants.c `dequantize_row_*` and the block structs in ggml-common.h; each
 * decoder below follows its C loop element for element, so results match ggml bit for bit (every
 * product here is exact in f64 and rounds once to f32, as the C code rounds once in f32).
 * Layouts (little-endian, f16 = IEEE half), value x per element:
 *   Q4_0  {d; qs[16]}                x = (nibble - 8) * d          low nibbles -> elems 0..15, high -> 16..31
 *   Q4_1  {d, m; qs[16]}             x = nibble * d + m
 *   Q5_0  {d; qh[4]; qs[16]}         x = ((nibble | bit << 4) - 16) * d   bit j of qh (u32) is elem j's 5th bit
 *   Q5_1  {d, m; qh[4]; qs[16]}      x = (nibble | bit << 4) * d + m
 *   Q8_0  {d; i8 qs[32]}             x = q * d
 *   Q4_K  {d, dmin; scales[12]; qs[128]}           8 sub-blocks of 32: x = d*sc*q - dmin*m (6-bit sc, m)
 *   Q5_K  {d, dmin; scales[12]; qh[32]; qs[128]}   as Q4_K with a 5th bit from qh
 *   Q6_K  {ql[128]; qh[64]; i8 scales[16]; d}      16 sub-blocks of 16: x = d * sc * (q6 - 32)
 * Deviation: none in values; the host is assumed little-endian (as Node on x86/ARM is).
 */
import { GgufError } from '../errors.ts';

export interface GgmlTypeInfo {
  id: number;
  name: string;
  /** Elements per block (1 for plain types). */
  blockElems: number;
  /** Bytes per block. */
  blockBytes: number;
  /** Whether `dequantize` handles this type. */
  supported: boolean;
}

const QK_K = 256;

// Geometry as in ggml's type_traits (ggml.c) and gguf-py's GGML_QUANT_SIZES.
const TYPE_TABLE: readonly [id: number, name: string, blockElems: number, blockBytes: number][] = [
  [0, 'F32', 1, 4],
  [1, 'F16', 1, 2],
  [2, 'Q4_0', 32, 2 + 16],
  [3, 'Q4_1', 32, 2 + 2 + 16],
  [6, 'Q5_0', 32, 2 + 4 + 16],
  [7, 'Q5_1', 32, 2 + 2 + 4 + 16],
  [8, 'Q8_0', 32, 2 + 32],
  [9, 'Q8_1', 32, 4 + 4 + 32],
  [10, 'Q2_K', QK_K, 2 + 2 + QK_K / 16 + QK_K / 4],
  [11, 'Q3_K', QK_K, 2 + QK_K / 4 + QK_K / 8 + 12],
  [12, 'Q4_K', QK_K, 2 + 2 + 12 + QK_K / 2],
  [13, 'Q5_K', QK_K, 2 + 2 + 12 + QK_K / 8 + QK_K / 2],
  [14, 'Q6_K', QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2],
  [15, 'Q8_K', QK_K, 4 + QK_K + QK_K / 8],
  [16, 'IQ2_XXS', QK_K, 2 + QK_K / 4],
  [17, 'IQ2_XS', QK_K, 2 + QK_K / 4 + QK_K / 32],
  [18, 'IQ3_XXS', QK_K, 2 + QK_K / 4 + QK_K / 8],
  [19, 'IQ1_S', QK_K, 2 + QK_K / 8 + QK_K / 16],
  [20, 'IQ4_NL', 32, 2 + 16],
  [21, 'IQ3_S', QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4],
  [22, 'IQ2_S', QK_K, 2 + QK_K / 4 + QK_K / 16],
  [23, 'IQ4_XS', QK_K, 2 + 2 + QK_K / 2 + QK_K / 64],
  [24, 'I8', 1, 1],
  [25, 'I16', 1, 2],
  [26, 'I32', 1, 4],
  [27, 'I64', 1, 8],
  [28, 'F64', 1, 8],
  [29, 'IQ1_M', QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32],
  [30, 'BF16', 1, 2],
  [34, 'TQ1_0', QK_K, 2 + 4 * 13],
  [35, 'TQ2_0', QK_K, 2 + 64],
  [39, 'MXFP4', 32, 1 + 16],
  [40, 'NVFP4', 64, 4 + 32],
  [41, 'Q1_0', 128, 2 + 16],
];

/** Ids ggml once used and has since dropped from GGUF files; named only to explain the error. */
const REMOVED_TYPES: ReadonlyMap<number, string> = new Map([
  [4, 'Q4_2'], [5, 'Q4_3'], [31, 'Q4_0_4_4'], [32, 'Q4_0_4_8'], [33, 'Q4_0_8_8'],
  [36, 'IQ4_NL_4_4'], [37, 'IQ4_NL_4_8'], [38, 'IQ4_NL_8_8'],
]);

type Decoder = (src: Uint8Array, nBlocks: number, out: Float32Array) => void;

const DECODERS: ReadonlyMap<number, Decoder> = new Map<number, Decoder>([
  [0, decodeF32],
  [1, decodeF16],
  [30, decodeBF16],
  [2, decodeQ4_0],
  [3, decodeQ4_1],
  [6, decodeQ5_0],
  [7, decodeQ5_1],
  [8, decodeQ8_0],
  [12, decodeQ4_K],
  [13, decodeQ5_K],
  [14, decodeQ6_K],
]);

const TYPES: ReadonlyMap<number, GgmlTypeInfo> = new Map(
  TYPE_TABLE.map(([id, name, blockElems, blockBytes]) => [id, Object.freeze({ id, name, blockElems, blockBytes, supported: DECODERS.has(id) })]),
);

const SUPPORTED_NAMES = TYPE_TABLE.filter(([id]) => DECODERS.has(id)).map(([, name]) => name).join(', ');

/** Name and block geometry of a ggml type id, or undefined for ids ggml does not (or no longer) define. */
export function ggmlType(id: number): GgmlTypeInfo | undefined {
  return TYPES.get(id);
}

function knownType(id: number): GgmlTypeInfo {
  const info = TYPES.get(id);
  if (info) return info;
  const removed = REMOVED_TYPES.get(id);
  if (removed !== undefined) {
    throw new GgufError(`ggml type ${removed} (id ${id}) was removed from ggml and cannot be loaded; convert the model again with a current llama.cpp`);
  }
  throw new GgufError(`unknown ggml type id ${id}; the GGUF file may be corrupt or newer than this engine (supported: ${SUPPORTED_NAMES})`);
}

/** Bytes that `numel` elements of type `id` occupy. */
export function ggmlTensorBytes(id: number, numel: number): number {
  const t = knownType(id);
  if (!Number.isSafeInteger(numel) || numel < 0 || numel % t.blockElems !== 0) {
    throw new GgufError(`a ${t.name} tensor needs a whole number of ${t.blockElems}-element blocks, but has ${numel} elements; the GGUF file is malformed`);
  }
  return (numel / t.blockElems) * t.blockBytes;
}

/**
 * Decodes `numel` elements of type `id` from `src` (exactly ggmlTensorBytes(id, numel) bytes, any
 * byteOffset) into `out` (allocated when omitted; at least numel long) and returns the numel values.
 */
export function dequantize(id: number, src: Uint8Array, numel: number, out?: Float32Array): Float32Array {
  const t = knownType(id);
  const decode = DECODERS.get(id);
  if (!decode) {
    throw new GgufError(`ggml type ${t.name} (id ${id}) cannot be dequantized by this engine; supported: ${SUPPORTED_NAMES}. Use a GGUF quantized to one of these (e.g. Q8_0 or Q4_K_M)`);
  }
  const bytes = ggmlTensorBytes(id, numel);
  if (src.length !== bytes) {
    throw new GgufError(`${numel} ${t.name} elements take ${bytes} bytes, but ${src.length} were given; the GGUF file is truncated or its tensor offsets are wrong`);
  }
  let dst: Float32Array;
  if (out === undefined) dst = new Float32Array(numel);
  else if (out.length < numel) throw new RangeError(`dequantize: output holds ${out.length} floats, needs ${numel}`);
  else dst = out.length === numel ? out : out.subarray(0, numel);
  decode(src, numel / t.blockElems, dst);
  return dst;
}

// ---- f16 ----

let f16Table: Float32Array | undefined;

/** f16 bits -> f32 value for all 65536 patterns, built on first use (256 KiB). */
function f16ToF32Table(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) table[h] = (sign ? -mant : mant) * 2 ** -24; // zero or subnormal, exact in f32
    else if (exp === 31) bits[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf / NaN keeping its payload
    else bits[h] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  }
  f16Table = table;
  return table;
}

// ---- plain types ----

function decodeF32(src: Uint8Array, n: number, out: Float32Array): void {
  // A byte copy needs no alignment of src.
  new Uint8Array(out.buffer, out.byteOffset, n * 4).set(src.subarray(0, n * 4));
}

function decodeF16(src: Uint8Array, n: number, out: Float32Array): void {
  const tab = f16ToF32Table();
  if ((src.byteOffset & 1) === 0) {
    const h = new Uint16Array(src.buffer, src.byteOffset, n); // aligned: one load per element
    for (let i = 0; i < n; i++) out[i] = tab[h[i]];
    return;
  }
  for (let i = 0, p = 0; i < n; i++, p += 2) out[i] = tab[src[p] | (src[p + 1] << 8)];
}

function decodeBF16(src: Uint8Array, n: number, out: Float32Array): void {
  const bits = new Uint32Array(out.buffer, out.byteOffset, n);
  for (let i = 0, p = 0; i < n; i++, p += 2) bits[i] = ((src[p] << 16) | (src[p + 1] << 24)) >>> 0;
}

// ---- 32-element blocks ----

function decodeQ4_0(src: Uint8Array, nb: number, out: Float32Array): void {
  const tab = f16ToF32Table();
  for (let b = 0, p = 0, o = 0; b < nb; b++, p += 18, o += 32) {
    const d = tab[src[p] | (src[p + 1] << 8)];
    const qs = p + 2;
    for (let j = 0; j < 16; j++) {
      const q = src[qs + j];
      out[o + j] = ((q & 0x0f) - 8) * d;
      out[o + j + 16] = ((q >> 4) - 8) * d;
    }
  }
}

function decodeQ4_1(src: Uint8Array, nb: number, out: Float32Array): void {
  const tab = f16ToF32Table();
  for (let b = 0, p = 0, o = 0; b < nb; b++, p += 20, o += 32) {
    const d = tab[src[p] | (src[p + 1] << 8)];
    const m = tab[src[p + 2] | (src[p + 3] << 8)];
    const qs = p + 4;
    for (let j = 0; j < 16; j++) {
      const q = src[qs + j];
      out[o + j] = (q & 0x0f) * d + m;
      out[o + j + 16] = (q >> 4) * d + m;
    }
  }
}

function decodeQ5_0(src: Uint8Array, nb: number, out: Float32Array): void {
  const tab = f16ToF32Table();
  for (let b = 0, p = 0, o = 0; b < nb; b++, p += 22, o += 32) {
    const d = tab[src[p] | (src[p + 1] << 8)];
    const qh = src[p + 2] | (src[p + 3] << 8) | (src[p + 4] << 16) | (src[p + 5] << 24);
    const qs = p + 6;
    for (let j = 0; j < 16; j++) {
      const q = src[qs + j];
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      out[o + j] = (((q & 0x0f) | h0) - 16) * d;
      out[o + j + 16] = (((q >> 4) | h1) - 16) * d;
    }
  }
}

function decodeQ5_1(src: Uint8Array, nb: number, out: Float32Array): void {
  const tab = f16ToF32Table();
  for (let b = 0, p = 0, o = 0; b < nb; b++, p += 24, o += 32) {
    const d = tab[src[p] | (src[p + 1] << 8)];
    const m = tab[src[p + 2] | (src[p + 3] << 8)];
    const qh = src[p + 4] | (src[p + 5] << 8) | (src[p + 6] << 16) | (src[p + 7] << 24);
    const qs = p + 8;
    for (let j = 0; j < 16; j++) {
      const q = src[qs + j];
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      out[o + j] = ((q & 0x0f) | h0) * d + m;
      out[o + j + 16] = ((q >> 4) | h1) * d + m;
    }
  }
}

function decodeQ8_0(src: Uint8Array, nb: number, out: Float32Array): void {
  const tab = f16ToF32Table();
  const s8 = new Int8Array(src.buffer, src.byteOffset, src.length); // Int8Array views need no alignment
  for (let b = 0, p = 0, o = 0; b < nb; b++, p += 34, o += 32) {
    const d = tab[src[p] | (src[p + 1] << 8)];
    const qs = p + 2;
    for (let j = 0; j < 32; j++) out[o + j] = s8[qs + j] * d;
  }
}

// ---- 256-element super-blocks ----

/**
 * Unpacks Q4_K/Q5_K's 12 scale bytes into 8 six-bit scales and 8 six-bit mins (ggml's
 * get_scale_min_k4): sub-blocks 0..3 sit in the low 6 bits of bytes 0..7, sub-blocks 4..7 take
 * their low 4 bits from bytes 8..11 and their top 2 bits from the spare bits of bytes 0..7.
 */
function unpackScalesK4(src: Uint8Array, at: number, sc: Uint8Array, mn: Uint8Array): void {
  for (let j = 0; j < 4; j++) {
    sc[j] = src[at + j] & 63;
    mn[j] = src[at + j + 4] & 63;
  }
  for (let j = 4; j < 8; j++) {
    sc[j] = (src[at + j + 4] & 0x0f) | ((src[at + j - 4] >> 6) << 4);
    mn[j] = (src[at + j + 4] >> 4) | ((src[at + j] >> 6) << 4);
  }
}

const scK = new Uint8Array(8);
const mnK = new Uint8Array(8);

function decodeQ4_K(src: Uint8Array, nb: number, out: Float32Array): void {
  const tab = f16ToF32Table();
  for (let b = 0, p = 0, o = 0; b < nb; b++, p += 144, o += QK_K) {
    const d = tab[src[p] | (src[p + 1] << 8)];
    const dmin = tab[src[p + 2] | (src[p + 3] << 8)];
    unpackScalesK4(src, p + 4, scK, mnK);
    let qs = p + 16;
    let y = o;
    // Each 32 bytes of qs hold two sub-blocks: low nibbles, then high nibbles.
    for (let s = 0; s < 8; s += 2, qs += 32, y += 64) {
      const d1 = d * scK[s], m1 = dmin * mnK[s];
      const d2 = d * scK[s + 1], m2 = dmin * mnK[s + 1];
      for (let l = 0; l < 32; l++) {
        const q = src[qs + l];
        out[y + l] = d1 * (q & 0x0f) - m1;
        out[y + l + 32] = d2 * (q >> 4) - m2;
      }
    }
  }
}

function decodeQ5_K(src: Uint8Array, nb: number, out: Float32Array): void {
  const tab = f16ToF32Table();
  for (let b = 0, p = 0, o = 0; b < nb; b++, p += 176, o += QK_K) {
    const d = tab[src[p] | (src[p + 1] << 8)];
    const dmin = tab[src[p + 2] | (src[p + 3] << 8)];
    unpackScalesK4(src, p + 4, scK, mnK);
    const qh = p + 16;
    let qs = p + 48;
    let y = o;
    // Sub-block s takes its 5th bit from bit s of qh[l].
    for (let s = 0; s < 8; s += 2, qs += 32, y += 64) {
      const d1 = d * scK[s], m1 = dmin * mnK[s];
      const d2 = d * scK[s + 1], m2 = dmin * mnK[s + 1];
      for (let l = 0; l < 32; l++) {
        const q = src[qs + l];
        const h = src[qh + l] >> s;
        out[y + l] = d1 * ((q & 0x0f) | ((h & 1) << 4)) - m1;
        out[y + l + 32] = d2 * ((q >> 4) | ((h & 2) << 3)) - m2;
      }
    }
  }
}

function decodeQ6_K(src: Uint8Array, nb: number, out: Float32Array): void {
  const tab = f16ToF32Table();
  const s8 = new Int8Array(src.buffer, src.byteOffset, src.length);
  for (let b = 0, p = 0, o = 0; b < nb; b++, p += 210, o += QK_K) {
    const d = tab[src[p + 208] | (src[p + 209] << 8)];
    // Two halves of 128 elements, each from 64 bytes of ql, 32 of qh and 8 scales.
    for (let half = 0; half < 2; half++) {
      const ql = p + half * 64;
      const qh = p + 128 + half * 32;
      const sc = p + 192 + half * 8;
      const y = o + half * 128;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const lo = src[ql + l], hi = src[ql + l + 32], h = src[qh + l];
        out[y + l] = d * s8[sc + is] * (((lo & 0x0f) | ((h & 3) << 4)) - 32);
        out[y + l + 32] = d * s8[sc + is + 2] * (((hi & 0x0f) | (((h >> 2) & 3) << 4)) - 32);
        out[y + l + 64] = d * s8[sc + is + 4] * (((lo >> 4) | (((h >> 4) & 3) << 4)) - 32);
        out[y + l + 96] = d * s8[sc + is + 6] * (((hi >> 4) | (((h >> 6) & 3) << 4)) - 32);
      }
    }
  }
}

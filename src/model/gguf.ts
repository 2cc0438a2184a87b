/**
 * Any model this engine loads (a Hugging Face checkpoint or a GGUF file) -> GGUF v3 with f32 or f16
 * tensors, so llama.cpp can run the very same weights as a reference. From a quantized GGUF this
 * gives the dequantized weights, which llama.cpp and this engine then compute on alike.
 * Layout: magic, version, tensor count, metadata key/values, tensor infos (dims innermost first),
 * padding to general.alignment, tensor data (each tensor aligned).
 * llama.cpp's `llama` graph (used for Llama and Mistral) applies RoPE to adjacent pairs, so Q/K rows
 * are permuted from HF's rotate-half order; `qwen2` uses rotate-half and takes rows as they are.
 * Tokenizer: from tokenizer.json for a checkpoint; every `tokenizer.*` key copied verbatim for a GGUF.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GgufError, ModelLoadError, UsageError } from '../errors.ts';
import type { ModelConfig } from './config.ts';
import { f32ToF16Bits, type TensorSource } from './safetensors.ts';
import { GGUF_MAGIC, GgufValueType as T, ggufTypeName, type GgufHeader, type GgufValue } from './gguf-reader.ts';
import { openModelSource } from './source.ts';

const GGUF_VERSION = 3;
const ALIGNMENT_BYTES = 32;

/** ggml tensor types used here. */
export const GGML_TYPE_F32 = 0;
export const GGML_TYPE_F16 = 1;

/** llama.cpp token types. */
const TOKEN_NORMAL = 1;
const TOKEN_CONTROL = 3;
const TOKEN_USER_DEFINED = 4;
const TOKEN_UNUSED = 5;

type NumberType = T.U8 | T.I8 | T.U16 | T.I16 | T.U32 | T.I32 | T.F32 | T.U64 | T.I64 | T.F64;
type ScalarType = NumberType | T.BOOL | T.STRING;

type MetaValue =
  | { type: NumberType; value: number }
  | { type: T.BOOL; value: boolean }
  | { type: T.STRING; value: string }
  | { type: T.ARRAY; elemType: NumberType; value: number[] }
  | { type: T.ARRAY; elemType: T.BOOL; value: boolean[] }
  | { type: T.ARRAY; elemType: T.STRING; value: string[] };

const u32 = (value: number): MetaValue => ({ type: T.U32, value });
const f32 = (value: number): MetaValue => ({ type: T.F32, value });
const str = (value: string): MetaValue => ({ type: T.STRING, value });
const bool = (value: boolean): MetaValue => ({ type: T.BOOL, value });

const NUMBER_TYPES: ReadonlySet<number> = new Set([T.U8, T.I8, T.U16, T.I16, T.U32, T.I32, T.F32, T.U64, T.I64, T.F64]);

function isScalarOf(type: number, v: unknown): boolean {
  if (NUMBER_TYPES.has(type)) return typeof v === 'number';
  if (type === T.BOOL) return typeof v === 'boolean';
  if (type === T.STRING) return typeof v === 'string';
  return false;
}

/** A value read from a GGUF file, checked to be writable as stored (same type, same element type). */
function metaFromGguf(key: string, v: GgufValue, where: string): MetaValue {
  const ok = v.type === T.ARRAY
    ? v.elemType !== undefined && Array.isArray(v.value) && (v.value as unknown[]).every((x) => isScalarOf(v.elemType!, x))
    : isScalarOf(v.type, v.value);
  if (!ok) throw new GgufError(`${where}: metadata ${key} (${ggufTypeName(v)}) cannot be copied: its value does not match its stored type`);
  return v as unknown as MetaValue;
}

/** Appends little-endian values to a growing buffer; flushed to the file in large chunks. */
class ByteWriter {
  private buf = Buffer.alloc(1 << 20);
  private len = 0;
  written = 0;
  constructor(private readonly fd: number) {}
  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    this.flush();
    if (n > this.buf.length) this.buf = Buffer.alloc(n);
  }
  flush(): void {
    let done = 0;
    while (done < this.len) done += fs.writeSync(this.fd, this.buf, done, this.len - done);
    this.len = 0;
  }
  u32(v: number): void { this.ensure(4); this.buf.writeUInt32LE(v >>> 0, this.len); this.len += 4; this.written += 4; }
  i32(v: number): void { this.ensure(4); this.buf.writeInt32LE(v, this.len); this.len += 4; this.written += 4; }
  u64(v: number): void { this.ensure(8); this.buf.writeBigUInt64LE(BigInt(v), this.len); this.len += 8; this.written += 8; }
  f32(v: number): void { this.ensure(4); this.buf.writeFloatLE(v, this.len); this.len += 4; this.written += 4; }
  u8(v: number): void { this.ensure(1); this.buf[this.len++] = v; this.written += 1; }
  i8(v: number): void { this.ensure(1); this.buf.writeInt8(v, this.len); this.len += 1; this.written += 1; }
  u16(v: number): void { this.ensure(2); this.buf.writeUInt16LE(v, this.len); this.len += 2; this.written += 2; }
  i16(v: number): void { this.ensure(2); this.buf.writeInt16LE(v, this.len); this.len += 2; this.written += 2; }
  i64(v: number): void { this.ensure(8); this.buf.writeBigInt64LE(BigInt(v), this.len); this.len += 8; this.written += 8; }
  f64(v: number): void { this.ensure(8); this.buf.writeDoubleLE(v, this.len); this.len += 8; this.written += 8; }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.bytes(b);
  }
  bytes(b: Uint8Array): void {
    if (b.length > this.buf.length) {
      this.flush();
      let done = 0;
      while (done < b.length) done += fs.writeSync(this.fd, b, done, b.length - done);
      this.written += b.length;
      return;
    }
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    this.written += b.length;
  }
  padTo(alignment: number): void {
    while (this.written % alignment !== 0) this.u8(0);
  }
}

function writeScalar(w: ByteWriter, type: ScalarType, v: number | boolean | string): void {
  switch (type) {
    case T.U8: w.u8(v as number); break;
    case T.I8: w.i8(v as number); break;
    case T.U16: w.u16(v as number); break;
    case T.I16: w.i16(v as number); break;
    case T.U32: w.u32(v as number); break;
    case T.I32: w.i32(v as number); break;
    case T.F32: w.f32(v as number); break;
    case T.U64: w.u64(v as number); break;
    case T.I64: w.i64(v as number); break;
    case T.F64: w.f64(v as number); break;
    case T.BOOL: w.u8(v ? 1 : 0); break;
    case T.STRING: w.str(v as string); break;
  }
}

function writeMeta(w: ByteWriter, key: string, v: MetaValue): void {
  w.str(key);
  w.u32(v.type);
  if (v.type !== T.ARRAY) {
    writeScalar(w, v.type, v.value);
    return;
  }
  w.u32(v.elemType);
  w.u64(v.value.length);
  for (const x of v.value) writeScalar(w, v.elemType, x);
}

interface PlannedTensor {
  ggufName: string;
  /** HF shape, outermost first. */
  shape: number[];
  ggmlType: number;
  /** Produces the f32 values in HF row-major order, already permuted for llama's RoPE. */
  load: () => Float32Array;
}

/**
 * Reorders the rows of a Q or K projection (or its bias) from rotate-half to adjacent-pair RoPE:
 * per head, row t*(d/2)+j moves to 2j+t.
 */
export function permuteRopeRows(data: Float32Array, numHeads: number, headDim: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  const half = headDim / 2;
  for (let h = 0; h < numHeads; h++) {
    for (let t = 0; t < 2; t++) {
      for (let j = 0; j < half; j++) {
        const src = (h * headDim + t * half + j) * cols;
        const dst = (h * headDim + 2 * j + t) * cols;
        out.set(data.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

/**
 * llama.cpp's per-frequency RoPE divisors for llama3 scaling (rope_freqs.weight): the unscaled
 * frequency divided by this factor is the scaled one. Uses rope_scaling's original context length.
 */
export function llama3RopeFreqFactors(cfg: ModelConfig): Float32Array {
  const s = cfg.ropeScaling;
  if (s?.type !== 'llama3') throw new Error('llama3RopeFreqFactors needs llama3 rope scaling');
  const half = cfg.headDim / 2;
  const out = new Float32Array(half);
  const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const freq = Math.pow(cfg.ropeTheta, -(2 * i) / cfg.headDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highFreqWavelen) out[i] = 1;
    else if (wavelen > lowFreqWavelen) out[i] = s.factor;
    else {
      const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / s.factor + smooth);
    }
  }
  return out;
}

/** llama.cpp's rope_freqs for the model: a GGUF's own tensor, or computed from llama3 rope scaling. */
function ropeFreqFactors(cfg: ModelConfig, where: string): Float32Array | undefined {
  const factors = cfg.ropeFreqFactors ?? (cfg.ropeScaling?.type === 'llama3' ? llama3RopeFreqFactors(cfg) : undefined);
  // llama.cpp's qwen2 graph reads no rope_freqs and refuses a file that carries tensors it does not use.
  if (factors && cfg.architecture === 'qwen2') throw new ModelLoadError(`${where}: llama3 rope scaling (rope_freqs) on qwen2 cannot be exported to GGUF`);
  return factors;
}

function planTensors(cfg: ModelConfig, src: TensorSource, dtype: 'f32' | 'f16', where: string, container: string): PlannedTensor[] {
  const permute = cfg.architecture !== 'qwen2';
  const names = new Set(src.names());
  const plan: PlannedTensor[] = [];
  const matrixType = dtype === 'f16' ? GGML_TYPE_F16 : GGML_TYPE_F32;
  const add = (hf: string, gguf: string, opts: { required?: boolean; rope?: number } = {}): void => {
    if (!names.has(hf)) {
      if (opts.required === false) return;
      throw new ModelLoadError(`${where}: tensor ${hf} is missing from the ${container}`);
    }
    names.delete(hf);
    const shape = src.info(hf).shape;
    const heads = opts.rope;
    plan.push({
      ggufName: gguf,
      shape,
      // Vectors (norms, biases) stay f32 as llama.cpp's converter keeps them.
      ggmlType: shape.length >= 2 ? matrixType : GGML_TYPE_F32,
      load: () => {
        const data = src.readF32(hf);
        if (!permute || heads === undefined) return data;
        return permuteRopeRows(data, heads, cfg.headDim, shape.length >= 2 ? shape[1] : 1);
      },
    });
  };
  add('model.embed_tokens.weight', 'token_embd.weight');
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}`;
    const b = `blk.${l}`;
    const biasRequired = cfg.attentionBias ? undefined : false;
    add(`${p}.input_layernorm.weight`, `${b}.attn_norm.weight`);
    add(`${p}.self_attn.q_proj.weight`, `${b}.attn_q.weight`, { rope: cfg.numHeads });
    add(`${p}.self_attn.q_proj.bias`, `${b}.attn_q.bias`, { rope: cfg.numHeads, required: biasRequired });
    add(`${p}.self_attn.k_proj.weight`, `${b}.attn_k.weight`, { rope: cfg.numKvHeads });
    add(`${p}.self_attn.k_proj.bias`, `${b}.attn_k.bias`, { rope: cfg.numKvHeads, required: biasRequired });
    add(`${p}.self_attn.v_proj.weight`, `${b}.attn_v.weight`);
    add(`${p}.self_attn.v_proj.bias`, `${b}.attn_v.bias`, { required: biasRequired });
    add(`${p}.self_attn.o_proj.weight`, `${b}.attn_output.weight`);
    add(`${p}.self_attn.o_proj.bias`, `${b}.attn_output.bias`, { required: false });
    add(`${p}.post_attention_layernorm.weight`, `${b}.ffn_norm.weight`);
    add(`${p}.mlp.gate_proj.weight`, `${b}.ffn_gate.weight`);
    add(`${p}.mlp.up_proj.weight`, `${b}.ffn_up.weight`);
    add(`${p}.mlp.down_proj.weight`, `${b}.ffn_down.weight`);
  }
  add('model.norm.weight', 'output_norm.weight');
  // Tied checkpoints omit lm_head; llama.cpp then reuses token_embd for the output.
  add('lm_head.weight', 'output.weight', { required: !cfg.tieWordEmbeddings });
  const factors = ropeFreqFactors(cfg, where);
  if (factors) plan.push({ ggufName: 'rope_freqs.weight', shape: [factors.length], ggmlType: GGML_TYPE_F32, load: () => factors });
  for (const n of names) {
    if (n.endsWith('.rotary_emb.inv_freq')) continue; // a cached buffer, recomputed from config
    throw new ModelLoadError(`${where}: tensor ${n} has no GGUF counterpart; the checkpoint does not look like ${cfg.architecture}`);
  }
  return plan;
}

function readJsonFile(file: string): Record<string, unknown> | null {
  if (!fs.existsSync(file)) return null;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new ModelLoadError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

type Meta = [string, MetaValue][];

/** tokenizer.json (byte-level BPE) and tokenizer_config.json -> tokenizer.ggml.* as llama.cpp's converter writes them. */
function hfTokenizerMeta(dir: string, cfg: ModelConfig): { vocabSize: number; meta: Meta } {
  const tj = readJsonFile(path.join(dir, 'tokenizer.json'));
  if (!tj) throw new ModelLoadError(`${dir} has no tokenizer.json; GGUF export needs it for the vocabulary`);
  const tc = readJsonFile(path.join(dir, 'tokenizer_config.json')) ?? {};
  const model = tj.model as { type?: string; vocab?: Record<string, number>; merges?: (string | string[])[] } | undefined;
  if (!model || model.type !== 'BPE' || typeof model.vocab !== 'object') {
    throw new ModelLoadError(`${dir}/tokenizer.json: only byte-level BPE tokenizers can be exported (got ${model?.type ?? 'none'})`);
  }
  const added = (tj.added_tokens ?? []) as { id: number; content: string; special?: boolean }[];
  let maxId = cfg.vocabSize - 1;
  for (const id of Object.values(model.vocab)) maxId = Math.max(maxId, id);
  for (const t of added) maxId = Math.max(maxId, t.id);
  const tokens = new Array<string | undefined>(maxId + 1);
  const tokenTypes = new Array<number>(maxId + 1).fill(TOKEN_NORMAL);
  for (const [tok, id] of Object.entries(model.vocab)) tokens[id] = tok;
  for (const t of added) {
    tokens[t.id] = t.content;
    tokenTypes[t.id] = t.special ? TOKEN_CONTROL : TOKEN_USER_DEFINED;
  }
  for (let i = 0; i < tokens.length; i++) {
    // Embedding rows past the tokenizer's vocabulary get placeholder names, as llama.cpp's converter does.
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      tokenTypes[i] = TOKEN_UNUSED;
    }
  }
  const merges = (model.merges ?? []).map((m) => (Array.isArray(m) ? m.join(' ') : m));
  const idOf = (v: unknown): number | null => {
    const s = typeof v === 'string' ? v : typeof v === 'object' && v !== null ? (v as { content?: unknown }).content : null;
    if (typeof s !== 'string') return null;
    const i = tokens.indexOf(s);
    return i >= 0 ? i : null;
  };
  const bosId = idOf(tc.bos_token) ?? cfg.bosTokenId;
  const eosId = idOf(tc.eos_token) ?? cfg.eosTokenIds[0] ?? null;
  const meta: Meta = [
    ['tokenizer.ggml.model', str('gpt2')],
    ['tokenizer.ggml.pre', str('default')],
    ['tokenizer.ggml.tokens', { type: T.ARRAY, elemType: T.STRING, value: tokens as string[] }],
    ['tokenizer.ggml.token_type', { type: T.ARRAY, elemType: T.I32, value: tokenTypes }],
    ['tokenizer.ggml.merges', { type: T.ARRAY, elemType: T.STRING, value: merges }],
    ['tokenizer.ggml.add_bos_token', bool(tc.add_bos_token === true)],
    ['tokenizer.ggml.add_eos_token', bool(tc.add_eos_token === true)],
  ];
  if (bosId !== null) meta.push(['tokenizer.ggml.bos_token_id', u32(bosId)]);
  if (eosId !== null) meta.push(['tokenizer.ggml.eos_token_id', u32(eosId)]);
  return { vocabSize: tokens.length, meta };
}

/** The keys of a GGUF source copied verbatim: its tokenizer, and rope scaling as stored (linear, none). */
function copiedGgufMeta(header: GgufHeader, arch: string, where: string): Meta {
  const meta: Meta = [];
  for (const [key, v] of header.typed) {
    if (key.startsWith('tokenizer.') || key.startsWith(`${arch}.rope.scaling.`) || key === `${arch}.rope.scale_linear`) {
      meta.push([key, metaFromGguf(key, v, where)]);
    }
  }
  return meta;
}

export interface ExportGgufOptions {
  dtype: 'f32' | 'f16';
  /** Called after each tensor with bytes of tensor data written so far and in total. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

function samePath(a: string, b: string): boolean {
  const real = (p: string): string => (fs.existsSync(p) ? fs.realpathSync(p) : path.resolve(p));
  return real(a) === real(b);
}

/**
 * Writes `modelPath` (a GGUF file or a Hugging Face model directory) to `outPath` as GGUF with f32
 * or f16 matrices (vectors stay f32). A GGUF input's tensors arrive dequantized and in HF row order.
 */
export async function exportGguf(modelPath: string, outPath: string, opts: ExportGgufOptions): Promise<void> {
  if (samePath(modelPath, outPath)) throw new UsageError(`--out ${outPath} is the model file itself; choose another output path`);
  const source = await openModelSource(modelPath);
  const cfg = source.config;
  const where = modelPath;
  const arch = cfg.architecture === 'qwen2' ? 'qwen2' : 'llama';
  let vocabSize: number;
  let name = path.basename(path.resolve(modelPath)).replace(/\.gguf$/i, '');
  let sourceMeta: Meta;
  if (source.kind === 'gguf') {
    const header = source.gguf!;
    vocabSize = cfg.vocabSize;
    const stored = header.metadata.get('general.name');
    if (typeof stored === 'string' && stored !== '') name = stored;
    sourceMeta = copiedGgufMeta(header, arch, where);
  } else {
    const tok = hfTokenizerMeta(modelPath, cfg);
    vocabSize = tok.vocabSize;
    sourceMeta = tok.meta;
    if (cfg.ropeScaling?.type === 'linear') {
      sourceMeta.unshift([`${arch}.rope.scaling.type`, str('linear')], [`${arch}.rope.scaling.factor`, f32(cfg.ropeScaling.factor)]);
    }
  }
  const meta: Meta = [
    ['general.architecture', str(arch)],
    ['general.name', str(name)],
    ['general.alignment', u32(ALIGNMENT_BYTES)],
    ['general.file_type', u32(opts.dtype === 'f16' ? 1 : 0)],
    [`${arch}.context_length`, u32(cfg.maxPositionEmbeddings)],
    [`${arch}.embedding_length`, u32(cfg.hiddenSize)],
    [`${arch}.block_count`, u32(cfg.numLayers)],
    [`${arch}.feed_forward_length`, u32(cfg.intermediateSize)],
    [`${arch}.attention.head_count`, u32(cfg.numHeads)],
    [`${arch}.attention.head_count_kv`, u32(cfg.numKvHeads)],
    [`${arch}.attention.key_length`, u32(cfg.headDim)],
    [`${arch}.attention.value_length`, u32(cfg.headDim)],
    [`${arch}.attention.layer_norm_rms_epsilon`, f32(cfg.rmsNormEps)],
    [`${arch}.rope.freq_base`, f32(cfg.ropeTheta)],
    [`${arch}.rope.dimension_count`, u32(cfg.headDim)],
    [`${arch}.vocab_size`, u32(vocabSize)],
    ...sourceMeta,
  ];

  const src = await source.openTensors();
  try {
    const plan = planTensors(cfg, src, opts.dtype, where, source.kind === 'gguf' ? 'GGUF file' : 'safetensors');
    writeGgufFile(outPath, meta, plan, opts.onProgress);
  } finally {
    src.close();
  }
}

function writeGgufFile(outPath: string, meta: Meta, plan: PlannedTensor[], onProgress?: (doneBytes: number, totalBytes: number) => void): void {
  const tensorBytes = (t: PlannedTensor): number => t.shape.reduce((a, b) => a * b, 1) * (t.ggmlType === GGML_TYPE_F16 ? 2 : 4);
  const align = (n: number): number => Math.ceil(n / ALIGNMENT_BYTES) * ALIGNMENT_BYTES;
  let totalBytes = 0;
  const offsets: number[] = [];
  for (const t of plan) {
    offsets.push(totalBytes);
    totalBytes = align(totalBytes + tensorBytes(t));
  }

  const fd = fs.openSync(outPath, 'w');
  try {
    const w = new ByteWriter(fd);
    w.u32(GGUF_MAGIC);
    w.u32(GGUF_VERSION);
    w.u64(plan.length);
    w.u64(meta.length);
    for (const [k, v] of meta) writeMeta(w, k, v);
    plan.forEach((t, i) => {
      w.str(t.ggufName);
      w.u32(t.shape.length);
      for (let d = t.shape.length - 1; d >= 0; d--) w.u64(t.shape[d]); // innermost dimension first
      w.u32(t.ggmlType);
      w.u64(offsets[i]);
    });
    w.padTo(ALIGNMENT_BYTES);
    const dataStart = w.written;
    for (const t of plan) {
      const values = t.load();
      if (t.ggmlType === GGML_TYPE_F16) {
        const half = new Uint16Array(values.length);
        for (let j = 0; j < values.length; j++) half[j] = f32ToF16Bits(values[j]);
        w.bytes(new Uint8Array(half.buffer));
      } else {
        w.bytes(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
      }
      w.padTo(ALIGNMENT_BYTES);
      onProgress?.(w.written - dataStart, totalBytes);
    }
    w.flush();
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(outPath, { force: true }); // a partial file would only fail later, far from the cause
    throw e;
  }
  fs.closeSync(fd);
}

export { readGgufHeader, type GgufHeader, type GgufTensorInfo } from './gguf-reader.ts';

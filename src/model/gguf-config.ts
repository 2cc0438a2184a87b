/**
 * GGUF metadata -> ModelConfig. Keys are llama.cpp's (`{arch}.block_count`, `{arch}.attention.*`,
 * `{arch}.rope.*`, `tokenizer.ggml.*`); every value is checked for its stored type so a wrong file
 * fails here with the key's name rather than later with a wrong shape.
 * Architectures: `llama` (Llama 1-3, Mistral files, SmolLM) and `qwen2`.
 */
import * as path from 'node:path';
import { GgufError, UnsupportedArchitectureError } from '../errors.ts';
import type { ModelConfig, RopeScaling } from './config.ts';
import { GgufValueType, ggufTypeName, type GgufHeader, type GgufValue } from './gguf-reader.ts';
import { dequantize, ggmlType } from './ggml-quants.ts';

const SUPPORTED = ['llama', 'qwen2'] as const;
type GgufArch = (typeof SUPPORTED)[number];

const INTEGER_TYPES = new Set([GgufValueType.U8, GgufValueType.I8, GgufValueType.U16, GgufValueType.I16, GgufValueType.U32, GgufValueType.I32, GgufValueType.U64, GgufValueType.I64]);
const FLOAT_TYPES = new Set([GgufValueType.F32, GgufValueType.F64]);

/** Typed access to a header's metadata, with one-line errors naming the key. */
export class GgufMeta {
  constructor(readonly header: GgufHeader, readonly where: string) {}

  has(key: string): boolean {
    return this.header.typed.has(key);
  }

  private get(key: string, required: boolean): GgufValue | undefined {
    const v = this.header.typed.get(key);
    if (!v && required) throw new GgufError(`${this.where}: metadata ${key} is missing; the file was not converted for this architecture or is incomplete`);
    return v;
  }

  private wrong(key: string, want: string, v: GgufValue): never {
    throw new GgufError(`${this.where}: metadata ${key} must be ${want}, but it is stored as ${ggufTypeName(v)}`);
  }

  int(key: string): number;
  int(key: string, fallback: number | null): number | null;
  int(key: string, fallback?: number | null): number | null {
    const v = this.get(key, fallback === undefined);
    if (!v) return fallback ?? null;
    if (!INTEGER_TYPES.has(v.type)) this.wrong(key, 'an integer', v);
    return v.value as number;
  }

  positiveInt(key: string, fallback?: number): number {
    const n = fallback === undefined ? this.int(key) : (this.int(key, fallback) as number);
    if (!Number.isInteger(n) || n <= 0) throw new GgufError(`${this.where}: metadata ${key} must be a positive integer, got ${n}`);
    return n;
  }

  float(key: string, fallback?: number): number {
    const v = this.get(key, fallback === undefined);
    if (!v) return fallback!;
    if (!FLOAT_TYPES.has(v.type) && !INTEGER_TYPES.has(v.type)) this.wrong(key, 'a number', v);
    return v.value as number;
  }

  bool(key: string, fallback: boolean | null): boolean | null {
    const v = this.get(key, false);
    if (!v) return fallback;
    if (v.type !== GgufValueType.BOOL) this.wrong(key, 'a bool', v);
    return v.value as boolean;
  }

  string(key: string): string;
  string(key: string, fallback: string | null): string | null;
  string(key: string, fallback?: string | null): string | null {
    const v = this.get(key, fallback === undefined);
    if (!v) return fallback ?? null;
    if (v.type !== GgufValueType.STRING) this.wrong(key, 'a string', v);
    return v.value as string;
  }

  strings(key: string, required: boolean): string[] | null {
    const v = this.get(key, required);
    if (!v) return null;
    if (v.type !== GgufValueType.ARRAY || v.elemType !== GgufValueType.STRING) this.wrong(key, 'an array of strings', v);
    return v.value as string[];
  }

  numbers(key: string): number[] | null {
    const v = this.get(key, false);
    if (!v) return null;
    if (v.type !== GgufValueType.ARRAY || v.elemType === undefined || (!INTEGER_TYPES.has(v.elemType) && !FLOAT_TYPES.has(v.elemType))) this.wrong(key, 'an array of numbers', v);
    return v.value as number[];
  }
}

export function ggufArchitecture(meta: GgufMeta): GgufArch {
  const arch = meta.string('general.architecture');
  if (!(SUPPORTED as readonly string[]).includes(arch)) {
    throw new UnsupportedArchitectureError(`${meta.where}: architecture ${arch} is not supported; supported GGUF architectures: ${SUPPORTED.join(', ')} (Mistral files use llama)`);
  }
  return arch as GgufArch;
}

/** Token texts at which llama.cpp ends generation (llama-vocab.cpp's end-of-generation list). */
const END_OF_GENERATION = new Set([
  '<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<|eom_id|>', '<EOT>', '_<EOT>', '<|end_of_text|>', '<end_of_utterance>',
]);

/** The rope_freqs tensor (llama3-style scaling as per-frequency divisors), if the file has one. */
export type FreqFactorReader = (name: string) => Uint8Array;

export function configFromGguf(header: GgufHeader, filePath: string, readRaw: FreqFactorReader): ModelConfig {
  const meta = new GgufMeta(header, path.basename(filePath));
  const arch = ggufArchitecture(meta);
  const k = (key: string): string => `${arch}.${key}`;

  const hiddenSize = meta.positiveInt(k('embedding_length'));
  const numHeads = meta.positiveInt(k('attention.head_count'));
  const numKvHeads = meta.positiveInt(k('attention.head_count_kv'), numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new GgufError(`${meta.where}: ${k('attention.head_count')} ${numHeads} is not a multiple of ${k('attention.head_count_kv')} ${numKvHeads}`);
  }
  const headDim = meta.positiveInt(k('attention.key_length'), Math.floor(hiddenSize / numHeads));
  const valueDim = meta.positiveInt(k('attention.value_length'), headDim);
  if (valueDim !== headDim) throw new GgufError(`${meta.where}: key length ${headDim} differs from value length ${valueDim}; not supported`);
  const ropeDims = meta.positiveInt(k('rope.dimension_count'), headDim);
  if (ropeDims !== headDim) throw new GgufError(`${meta.where}: RoPE on ${ropeDims} of ${headDim} head dimensions (partial rotary) is not supported`);
  if (headDim % 2 !== 0) throw new GgufError(`${meta.where}: head dimension ${headDim} must be even for RoPE`);

  const tensorNames = new Set(header.tensors.map((t) => t.name));
  const embed = header.tensors.find((t) => t.name === 'token_embd.weight');
  if (!embed) throw new GgufError(`${meta.where} has no token_embd.weight tensor; it is not a complete model file`);
  const tokens = meta.strings('tokenizer.ggml.tokens', false);
  const vocabSize = meta.positiveInt(k('vocab_size'), tokens?.length ?? embed.dims[1]);
  if (embed.dims[1] !== vocabSize || embed.dims[0] !== hiddenSize) {
    throw new GgufError(`${meta.where}: token_embd.weight is [${embed.dims.slice().reverse().join(', ')}], metadata implies [${vocabSize}, ${hiddenSize}]`);
  }

  // Required by llama.cpp as well: a default would silently change the model.
  const maxPositionEmbeddings = meta.positiveInt(k('context_length'));
  let ropeScaling: RopeScaling = null;
  const scalingType = meta.string(k('rope.scaling.type'), null);
  const factor = meta.float(k('rope.scaling.factor'), meta.float(k('rope.scale_linear'), 0));
  if (!(factor >= 0)) throw new GgufError(`${meta.where}: ${k('rope.scaling.factor')} must be positive, got ${factor}`);
  // As llama.cpp: a factor of 0 (or none) means no scaling.
  if ((scalingType === 'linear' || scalingType === null) && factor > 0 && factor !== 1) {
    ropeScaling = { type: 'linear', factor };
  } else if (scalingType !== null && scalingType !== 'none' && scalingType !== 'linear') {
    throw new GgufError(`${meta.where}: rope scaling ${scalingType} is not supported (none, linear and llama3-style rope_freqs are)`);
  }
  const experts = meta.int(k('expert_count'), 0) ?? 0;
  if (experts > 0) throw new GgufError(`${meta.where}: a mixture-of-experts model (${experts} experts) is not supported; dense Llama-family models are`);
  const splits = meta.int('split.count', 0) ?? 0;
  if (splits > 1) throw new GgufError(`${meta.where} is part 1 of a GGUF split into ${splits} files; merge them first with llama.cpp's \`llama-gguf-split --merge\``);

  let ropeFreqFactors: Float32Array | undefined;
  const freqs = header.tensors.find((t) => t.name === 'rope_freqs.weight');
  if (freqs) {
    if (freqs.dims.length !== 1 || freqs.dims[0] !== headDim / 2) {
      throw new GgufError(`${meta.where}: rope_freqs.weight has ${freqs.dims.join('x')} entries, expected ${headDim / 2}`);
    }
    if (!ggmlType(freqs.type)?.supported) throw new GgufError(`${meta.where}: rope_freqs.weight has an unsupported type ${freqs.type}`);
    ropeFreqFactors = dequantize(freqs.type, readRaw(freqs.name), headDim / 2);
  }

  const eos = new Set<number>();
  for (const key of ['tokenizer.ggml.eos_token_id', 'tokenizer.ggml.eot_token_id', 'tokenizer.ggml.eom_token_id']) {
    const id = meta.int(key, null);
    if (id !== null) eos.add(id);
  }
  // llama.cpp also ends generation at these tokens wherever they are in the vocabulary.
  (tokens ?? []).forEach((tok, id) => { if (END_OF_GENERATION.has(tok)) eos.add(id); });
  const spm = meta.string('tokenizer.ggml.model', null) === 'llama';
  if (spm && eos.size === 0 && vocabSize > 2) eos.add(2); // SentencePiece defaults, as llama.cpp: <s> 1, </s> 2
  const fileType = meta.int('general.file_type', null);

  return {
    architecture: arch,
    hiddenSize,
    intermediateSize: meta.positiveInt(k('feed_forward_length')),
    numLayers: meta.positiveInt(k('block_count')),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    rmsNormEps: meta.float(k('attention.layer_norm_rms_epsilon')),
    ropeTheta: meta.float(k('rope.freq_base'), 10000),
    ropeScaling,
    ropeFreqFactors,
    maxPositionEmbeddings,
    tieWordEmbeddings: !tensorNames.has('output.weight'),
    attentionBias: arch === 'qwen2' || tensorNames.has('blk.0.attn_q.bias'),
    slidingWindow: null,
    bosTokenId: meta.int('tokenizer.ggml.bos_token_id', spm ? 1 : null),
    eosTokenIds: [...eos],
    torchDtype: fileType === null ? 'gguf' : `gguf file_type ${fileType}`,
  };
}

/** Tensor count and bytes per ggml type: what `inspect` shows as the file's quantization mix. */
export function quantizationMix(header: GgufHeader): { type: string; tensors: number; elements: number }[] {
  const by = new Map<string, { type: string; tensors: number; elements: number }>();
  for (const t of header.tensors) {
    const name = ggmlType(t.type)?.name ?? `type ${t.type}`;
    const e = by.get(name) ?? { type: name, tensors: 0, elements: 0 };
    e.tensors++;
    e.elements += t.dims.reduce((a, b) => a * b, 1);
    by.set(name, e);
  }
  return [...by.values()].sort((a, b) => b.elements - a.elements);
}

/**
 * Hugging Face config.json -> ModelConfig: the hyperparameters of the Llama family this engine runs.
 * Family quirks (Qwen2's q/k/v bias, Mistral's sliding window) become plain flags here so the
 * forward pass never branches on the architecture name.
 */
import { ModelLoadError, UnsupportedArchitectureError } from '../errors.ts';

export type Architecture = 'llama' | 'qwen2' | 'mistral';

export interface Llama3RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export interface LinearRopeScaling {
  type: 'linear';
  factor: number;
}

export type RopeScaling = null | Llama3RopeScaling | LinearRopeScaling;

export interface ModelConfig {
  architecture: Architecture;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  /** Per-frequency divisors of the RoPE inverse frequencies (GGUF's rope_freqs tensor, llama.cpp's freq_factors). */
  ropeFreqFactors?: Float32Array;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (always true for Qwen2). */
  attentionBias: boolean;
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  torchDtype: string;
}

/** HF class name -> our architecture; the first entry of `architectures` decides. */
const ARCHITECTURES: Record<string, Architecture> = {
  LlamaForCausalLM: 'llama',
  Qwen2ForCausalLM: 'qwen2',
  MistralForCausalLM: 'mistral',
};

/** `model_type` fallback for configs without an `architectures` list. */
const MODEL_TYPES: Record<string, Architecture> = { llama: 'llama', qwen2: 'qwen2', mistral: 'mistral' };

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parseConfig(json: unknown, dirForMessages: string): ModelConfig {
  const where = `${dirForMessages}/config.json`;
  if (!isObject(json)) throw new ModelLoadError(`${where} is not a JSON object`);

  const architecture = detectArchitecture(json, where);

  const num = (key: string, fallback?: number): number => {
    const v = json[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw new ModelLoadError(`${where} lacks "${key}"; is this a complete Hugging Face checkpoint?`);
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new ModelLoadError(`${where}: "${key}" must be a number, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const positiveInt = (key: string, fallback?: number): number => {
    const v = num(key, fallback);
    if (!Number.isInteger(v) || v <= 0) {
      throw new ModelLoadError(`${where}: "${key}" must be a positive integer, got ${v}`);
    }
    return v;
  };

  const hiddenSize = positiveInt('hidden_size');
  const numHeads = positiveInt('num_attention_heads');
  const numKvHeads = positiveInt('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new ModelLoadError(`${where}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  const headDimDefault = hiddenSize / numHeads;
  const headDim = positiveInt('head_dim', Number.isInteger(headDimDefault) ? headDimDefault : undefined);
  if (headDim % 2 !== 0) throw new ModelLoadError(`${where}: head_dim ${headDim} must be even for RoPE`);

  // transformers >= 5 moves rope_theta/rope_scaling into `rope_parameters`.
  const ropeParams = isObject(json.rope_parameters) ? json.rope_parameters : undefined;
  const ropeThetaRaw = json.rope_theta ?? ropeParams?.rope_theta ?? 10000;
  if (typeof ropeThetaRaw !== 'number' || !(ropeThetaRaw > 0)) {
    throw new ModelLoadError(`${where}: rope_theta must be a positive number, got ${JSON.stringify(ropeThetaRaw)}`);
  }
  const maxPositionEmbeddings = positiveInt('max_position_embeddings', 2048);
  const ropeScaling = parseRopeScaling(json.rope_scaling ?? ropeParams ?? null, maxPositionEmbeddings, where);

  let slidingWindow: number | null = null;
  const sw = json.sliding_window;
  // Qwen2 configs carry a sliding_window value that only applies when use_sliding_window is true.
  const swEnabled = architecture === 'qwen2' ? json.use_sliding_window === true : true;
  if (swEnabled && typeof sw === 'number' && sw > 0) slidingWindow = sw;

  const bos = json.bos_token_id;
  const eos = json.eos_token_id;
  const eosTokenIds: number[] = typeof eos === 'number' ? [eos]
    : Array.isArray(eos) ? eos.filter((x): x is number => typeof x === 'number') : [];

  const tie = json.tie_word_embeddings;
  const dtype = json.torch_dtype ?? json.dtype;

  return {
    architecture,
    hiddenSize,
    intermediateSize: positiveInt('intermediate_size'),
    numLayers: positiveInt('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: positiveInt('vocab_size'),
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta: ropeThetaRaw,
    ropeScaling,
    maxPositionEmbeddings,
    tieWordEmbeddings: typeof tie === 'boolean' ? tie : false,
    attentionBias: architecture === 'qwen2' ? true : json.attention_bias === true,
    slidingWindow,
    bosTokenId: typeof bos === 'number' ? bos : null,
    eosTokenIds,
    torchDtype: typeof dtype === 'string' ? dtype : 'float32',
  };
}

function detectArchitecture(json: Json, where: string): Architecture {
  const supported = Object.keys(ARCHITECTURES).join(', ');
  const archs = json.architectures;
  if (Array.isArray(archs) && archs.length > 0) {
    const name = String(archs[0]);
    const arch = ARCHITECTURES[name];
    if (!arch) throw new UnsupportedArchitectureError(`${where}: architecture ${name} is not supported; supported: ${supported}`);
    return arch;
  }
  const mt = json.model_type;
  if (typeof mt === 'string') {
    const arch = MODEL_TYPES[mt];
    if (!arch) throw new UnsupportedArchitectureError(`${where}: model_type ${mt} is not supported; supported: ${supported}`);
    return arch;
  }
  throw new UnsupportedArchitectureError(`${where} names no architecture ("architectures" or "model_type"); supported: ${supported}`);
}

function parseRopeScaling(raw: unknown, maxPositionEmbeddings: number, where: string): RopeScaling {
  if (raw === null || raw === undefined) return null;
  if (!isObject(raw)) throw new ModelLoadError(`${where}: rope_scaling must be an object or null`);
  const type = raw.rope_type ?? raw.type ?? 'default';
  const factorOf = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'number' || !(v > 0)) {
      throw new ModelLoadError(`${where}: rope_scaling.${key} must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  switch (type) {
    case 'default':
      return null;
    case 'linear':
      return { type: 'linear', factor: factorOf('factor') };
    case 'llama3': {
      const scaling: Llama3RopeScaling = {
        type: 'llama3',
        factor: factorOf('factor'),
        lowFreqFactor: factorOf('low_freq_factor', 1),
        highFreqFactor: factorOf('high_freq_factor', 4),
        originalMaxPositionEmbeddings: factorOf('original_max_position_embeddings', maxPositionEmbeddings),
      };
      if (scaling.highFreqFactor <= scaling.lowFreqFactor) {
        throw new ModelLoadError(`${where}: rope_scaling.high_freq_factor must exceed low_freq_factor`);
      }
      return scaling;
    }
    default:
      throw new UnsupportedArchitectureError(`${where}: rope_scaling type ${JSON.stringify(type)} is not supported; supported: llama3, linear`);
  }
}

/**
 * RoPE inverse frequencies theta^(-2i/d), i < headDim/2, after rope scaling: llama3 divides low
 * frequencies by `factor` and blends the band between (as transformers' _compute_llama3_parameters);
 * linear divides all by `factor` (positions / factor).
 */
export function ropeInvFreq(cfg: Pick<ModelConfig, 'headDim' | 'ropeTheta' | 'ropeScaling' | 'ropeFreqFactors'>): Float32Array {
  const half = cfg.headDim / 2;
  const out = new Float32Array(half);
  const s = cfg.ropeScaling;
  for (let i = 0; i < half; i++) {
    const base = Math.pow(cfg.ropeTheta, -(2 * i) / cfg.headDim);
    let inv = base;
    if (s?.type === 'linear') {
      inv = base / s.factor;
    } else if (s?.type === 'llama3') {
      const wavelen = (2 * Math.PI) / base;
      const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
      const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
      if (wavelen > lowFreqWavelen) {
        inv = base / s.factor;
      } else if (wavelen >= highFreqWavelen) {
        const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv = (1 - smooth) * (base / s.factor) + smooth * base;
      }
    }
    out[i] = cfg.ropeFreqFactors ? inv / cfg.ropeFreqFactors[i]! : inv;
  }
  return out;
}

export interface MemoryEstimate {
  parameterCount: number;
  weightBytes: number;
  /** f32 K and V for 1024 tokens over all layers and KV heads. */
  kvBytesPer1kTokens: number;
}

/** Elements per int8 block sharing one f32 scale in the q8 weight format. */
export const Q8_BLOCK_SIZE = 32;

/**
 * Parameter count and resident bytes. q8 stores every matrix (embeddings and lm_head included) as
 * int8 with one f32 scale per Q8_BLOCK_SIZE elements; norms and biases stay f32.
 */
export function estimateMemory(cfg: ModelConfig, weights: 'f32' | 'q8'): MemoryEstimate {
  const h = cfg.hiddenSize;
  const qDim = cfg.numHeads * cfg.headDim;
  const kvDim = cfg.numKvHeads * cfg.headDim;
  const perLayerMatrix = h * qDim + 2 * h * kvDim + qDim * h + 3 * h * cfg.intermediateSize;
  const perLayerVector = 2 * h + (cfg.attentionBias ? qDim + 2 * kvDim : 0);
  const embedMatrix = cfg.vocabSize * h * (cfg.tieWordEmbeddings ? 1 : 2);
  const matrixParams = cfg.numLayers * perLayerMatrix + embedMatrix;
  const vectorParams = cfg.numLayers * perLayerVector + h;
  const parameterCount = matrixParams + vectorParams;
  const bytesPerMatrixParam = weights === 'f32' ? 4 : 1 + 4 / Q8_BLOCK_SIZE;
  return {
    parameterCount,
    weightBytes: Math.ceil(matrixParams * bytesPerMatrixParam) + vectorParams * 4,
    kvBytesPer1kTokens: 2 * cfg.numLayers * cfg.numKvHeads * cfg.headDim * 4 * 1024,
  };
}

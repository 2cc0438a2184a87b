import type { Runtime } from '../runtime/wasm.ts';
import { Q8_GROUP_ROWS, q8Bytes, q8ScaleIndex, q8ValueIndex, type Q8Weight } from '../runtime/kernels.ts';
import { estimateMemory, type ModelConfig } from './config.ts';
import type { TensorSource } from './safetensors.ts';
import { ModelLoadError } from '../errors.ts';

export type WeightFormat = 'f32' | 'q8';

/** A linear layer's weight in wasm memory: f32 [N, K] or int8 with per-32-block scales. */
export type Linear =
  | { kind: 'f32'; ptr: number; N: number; K: number; bias: number }
  | { kind: 'q8'; q: Q8Weight; N: number; K: number; bias: number };

export interface LayerWeights {
  attnNorm: number;
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
  mlpNorm: number;
  gate: Linear;
  up: Linear;
  down: Linear;
}

export interface ModelWeights {
  format: WeightFormat;
  /** Token embeddings, [vocab, hidden]; also the output head when embeddings are tied. */
  embed: Linear;
  layers: LayerWeights[];
  finalNorm: number;
  lmHead: Linear;
  /** Bytes of wasm memory the weights occupy. */
  bytes: number;
}

/** q8 for models over 300M parameters, f32 below, unless the user says otherwise. */
export function defaultWeightFormat(cfg: ModelConfig): WeightFormat {
  return estimateMemory(cfg, 'f32').parameterCount > 300e6 ? 'q8' : 'f32';
}

export interface LoadWeightsOptions {
  format: WeightFormat;
  onProgress?: (done: number, total: number) => void;
}

/** f32 bytes of one slice of a large tensor while loading. */
export const LOAD_SLICE_BYTES = 8 * 2 ** 20;

/** Read every tensor of the checkpoint into wasm memory, converting or quantizing as asked. */
export function loadWeights(rt: Runtime, cfg: ModelConfig, src: TensorSource, opts: LoadWeightsOptions): ModelWeights {
  const names = new Set(src.names());
  const total = 3 + cfg.numLayers * 9;
  let done = 0;
  let bytes = 0;
  const tick = (): void => { done++; opts.onProgress?.(done, total); };

  const check = (name: string, shape: number[]): void => {
    if (!names.has(name)) throw new ModelLoadError(`checkpoint is missing tensor ${name}; is this a complete ${cfg.architecture} checkpoint?`);
    const info = src.info(name);
    if (info.shape.length !== shape.length || info.shape.some((v, i) => v !== shape[i])) {
      throw new ModelLoadError(`tensor ${name} has shape [${info.shape.join(', ')}], config.json implies [${shape.join(', ')}]`);
    }
  };
  const need = (name: string, shape: number[]): Float32Array => {
    check(name, shape);
    return src.readF32(name);
  };
  const vector = (name: string, n: number): number => {
    const data = need(name, [n]);
    const ptr = rt.alloc(n * 4);
    rt.f32(ptr, n).set(data);
    bytes += n * 4;
    return ptr;
  };
  const linear = (name: string, N: number, K: number, biasName?: string, format = opts.format): Linear => {
    check(name, [N, K]);
    const bias = biasName ? vector(biasName, N) : 0;
    const q8 = format === 'q8' && K % 32 === 0;
    const heldBytes = q8 ? q8Bytes(N, K) : N * K * 4;
    // A slice of rows at a time, read straight into wasm memory where the source allows it, so
    // loading holds at most one slice as f32 beside the weights (the embedding is the largest tensor).
    const sliceRows = Math.min(N, Math.max(1, Math.floor(LOAD_SLICE_BYTES / (K * 4))));
    const q = q8 ? rt.k.allocQ8(N, K) : undefined;
    const ptr = q8 ? 0 : rt.alloc(N * K * 4);
    const tmp = q8 ? rt.alloc(sliceRows * K * 4) : 0;
    try {
      let sliced = true;
      for (let r0 = 0; r0 < N && sliced; r0 += sliceRows) {
        const rows = Math.min(sliceRows, N - r0);
        const into = q8 ? rt.f32(tmp, rows * K) : rt.f32(ptr + r0 * K * 4, rows * K);
        sliced = src.readF32Rows?.(name, r0, rows, into) ?? false;
        if (sliced && q) rt.k.quantizeQ8Slice(q, tmp, r0, rows);
      }
      if (!sliced) {
        // The whole tensor at once (the source cannot give slices of this one).
        const data = src.readF32(name);
        if (q) {
          for (let r0 = 0; r0 < N; r0 += sliceRows) {
            const rows = Math.min(sliceRows, N - r0);
            rt.f32(tmp, rows * K).set(data.subarray(r0 * K, (r0 + rows) * K));
            rt.k.quantizeQ8Slice(q, tmp, r0, rows);
          }
        } else {
          rt.f32(ptr, N * K).set(data);
        }
      }
    } finally {
      if (tmp !== 0) rt.free(tmp);
    }
    bytes += heldBytes;
    return q ? { kind: 'q8', q, N, K, bias } : { kind: 'f32', ptr, N, K, bias };
  };

  const D = cfg.hiddenSize;
  const I = cfg.intermediateSize;
  const qDim = cfg.numHeads * cfg.headDim;
  const kvDim = cfg.numKvHeads * cfg.headDim;
  const bias = cfg.attentionBias;

  const embed = linear('model.embed_tokens.weight', cfg.vocabSize, D);
  tick();
  const layers: LayerWeights[] = [];
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const layer: Partial<LayerWeights> = {};
    layer.attnNorm = vector(`${p}input_layernorm.weight`, D); tick();
    layer.q = linear(`${p}self_attn.q_proj.weight`, qDim, D, bias ? `${p}self_attn.q_proj.bias` : undefined); tick();
    layer.k = linear(`${p}self_attn.k_proj.weight`, kvDim, D, bias ? `${p}self_attn.k_proj.bias` : undefined); tick();
    layer.v = linear(`${p}self_attn.v_proj.weight`, kvDim, D, bias ? `${p}self_attn.v_proj.bias` : undefined); tick();
    layer.o = linear(`${p}self_attn.o_proj.weight`, D, qDim); tick();
    layer.mlpNorm = vector(`${p}post_attention_layernorm.weight`, D); tick();
    layer.gate = linear(`${p}mlp.gate_proj.weight`, I, D); tick();
    layer.up = linear(`${p}mlp.up_proj.weight`, I, D); tick();
    layer.down = linear(`${p}mlp.down_proj.weight`, D, I); tick();
    layers.push(layer as LayerWeights);
  }
  const finalNorm = vector('model.norm.weight', D);
  tick();
  const tied = cfg.tieWordEmbeddings || !names.has('lm_head.weight');
  const lmHead = tied ? embed : linear('lm_head.weight', cfg.vocabSize, D);
  tick();
  return { format: opts.format, embed, layers, finalNorm, lmHead, bytes };
}

/** Copy the embedding rows of `tokens` into `out` ([T, hidden] f32). */
export function embedTokens(rt: Runtime, embed: Linear, tokens: ArrayLike<number>, out: number): void {
  const K = embed.K;
  for (let t = 0; t < tokens.length; t++) {
    const id = tokens[t]!;
    if (id < 0 || id >= embed.N) throw new RangeError(`token id ${id} outside the vocabulary of ${embed.N}`);
    const dst = rt.f32(out + t * K * 4, K);
    if (embed.kind === 'f32') {
      dst.set(rt.f32(embed.ptr + id * K * 4, K));
    } else {
      // The row's values sit in its group of rows (packed layout: Q8Weight).
      const R = Q8_GROUP_ROWS, g = Math.floor(id / R);
      const qs = rt.i8(embed.q.qs + g * R * K, R * K);
      const sc = rt.f32(embed.q.scales + g * ((R * K) / 32) * 4, (R * K) / 32);
      const q0 = q8ValueIndex(K, id, 0) - g * R * K, s0 = q8ScaleIndex(K, id, 0) - g * ((R * K) / 32);
      for (let i = 0; i < K; i++) dst[i] = qs[q0 + (i >> 1) * 2 * R + (i & 1)]! * sc[s0 + (i >> 5) * R]!;
    }
  }
}

import { parseConfig, type ModelConfig } from '../model/config.ts';
import type { TensorSource } from '../model/safetensors.ts';
import { makeRng } from '../engine/sampling.ts';
import { UsageError } from '../errors.ts';

/** config.json of real models, for benchmarks whose speed does not depend on weight values. */
const SHAPES: Record<string, Record<string, unknown>> = {
  'qwen2.5-0.5b': {
    architectures: ['Qwen2ForCausalLM'],
    hidden_size: 896,
    intermediate_size: 4864,
    num_hidden_layers: 24,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    vocab_size: 151936,
    max_position_embeddings: 32768,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    tie_word_embeddings: true,
    bos_token_id: 151643,
    eos_token_id: 151643,
    torch_dtype: 'bfloat16',
  },
};

export function shapeNames(): string[] {
  return Object.keys(SHAPES);
}

export function shapeConfig(name: string): ModelConfig {
  const json = SHAPES[name];
  if (!json) throw new UsageError(`unknown model shape '${name}'; choose one of: ${shapeNames().join(', ')}`);
  return parseConfig(json, `shape ${name}`);
}

/** Tensors with HF names and shapes for a config, filled with seeded noise on demand. */
export function syntheticTensors(cfg: ModelConfig, seed = 1): TensorSource {
  const D = cfg.hiddenSize;
  const qDim = cfg.numHeads * cfg.headDim;
  const kvDim = cfg.numKvHeads * cfg.headDim;
  const shapes = new Map<string, number[]>();
  shapes.set('model.embed_tokens.weight', [cfg.vocabSize, D]);
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}.`;
    shapes.set(`${p}input_layernorm.weight`, [D]);
    shapes.set(`${p}post_attention_layernorm.weight`, [D]);
    shapes.set(`${p}self_attn.q_proj.weight`, [qDim, D]);
    shapes.set(`${p}self_attn.k_proj.weight`, [kvDim, D]);
    shapes.set(`${p}self_attn.v_proj.weight`, [kvDim, D]);
    shapes.set(`${p}self_attn.o_proj.weight`, [D, qDim]);
    if (cfg.attentionBias) {
      shapes.set(`${p}self_attn.q_proj.bias`, [qDim]);
      shapes.set(`${p}self_attn.k_proj.bias`, [kvDim]);
      shapes.set(`${p}self_attn.v_proj.bias`, [kvDim]);
    }
    shapes.set(`${p}mlp.gate_proj.weight`, [cfg.intermediateSize, D]);
    shapes.set(`${p}mlp.up_proj.weight`, [cfg.intermediateSize, D]);
    shapes.set(`${p}mlp.down_proj.weight`, [D, cfg.intermediateSize]);
  }
  shapes.set('model.norm.weight', [D]);
  if (!cfg.tieWordEmbeddings) shapes.set('lm_head.weight', [cfg.vocabSize, D]);
  let n = 0;
  return {
    names: () => [...shapes.keys()],
    info: (name: string) => ({ dtype: 'F32' as const, shape: shapes.get(name)! }),
    readF32: (name: string) => {
      const shape = shapes.get(name)!;
      const size = shape.reduce((a, b) => a * b, 1);
      const rng = makeRng(seed * 7919 + n++);
      const out = new Float32Array(size);
      const isNorm = shape.length === 1 && name.endsWith('norm.weight');
      const s = isNorm ? 0 : 1 / Math.sqrt(shape[shape.length - 1]!);
      for (let i = 0; i < size; i++) out[i] = isNorm ? 1 : (rng() * 2 - 1) * s;
      return out;
    },
    close: () => {},
  };
}

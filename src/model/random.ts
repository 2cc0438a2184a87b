/**
 * Tiny random checkpoints in the Hugging Face layout (config.json, model.safetensors,
 * tokenizer.json, tokenizer_config.json) for tests and parity checks against llama.cpp.
 * Weight scales are chosen so the logits are decisive: the greedy token's margin over the runner-up
 * is typically far above float rounding noise, so two correct implementations agree on it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeSafetensors, type SafetensorsDtype, type TensorToWrite } from './safetensors.ts';

export interface RandomCheckpointSpec {
  architecture: 'llama' | 'qwen2' | 'mistral';
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  /** 256 byte tokens (id = byte value) followed by the family's special tokens. */
  vocab: 'bytes';
  maxPositionEmbeddings: number;
  ropeScaling?: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };
  tieWordEmbeddings: boolean;
  dtype: SafetensorsDtype;
  seed: number;
  /** Multiplies every projection's standard deviation (default 1). */
  weightScale?: number;
  /** Written as config.json sliding_window for mistral (default null: full attention). */
  slidingWindow?: number | null;
  ropeTheta?: number;
}

/** Deterministic 32-bit PRNG (mulberry32) with Box-Muller normals: same seed, same weights. */
export class Rng {
  private state: number;
  private spare: number | null = null;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  uniform(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = this.uniform();
    while (u <= 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  normals(n: number, std: number, mean = 0): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = mean + std * this.normal();
    return out;
  }
}

/** GPT-2's printable stand-in for each byte, as used by byte-level BPE vocabularies. */
export function byteToUnicode(): string[] {
  const direct: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) direct.push(b);
  for (let b = 0xa1; b <= 0xac; b++) direct.push(b);
  for (let b = 0xae; b <= 0xff; b++) direct.push(b);
  const out = new Array<string>(256);
  const isDirect = new Set(direct);
  let next = 256;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(isDirect.has(b) ? b : next++);
  return out;
}

interface SpecialTokens {
  tokens: string[];
  bos: string | null;
  eos: string[];
  addBos: boolean;
  chatTemplate: string;
}

function specialTokens(arch: RandomCheckpointSpec['architecture']): SpecialTokens {
  if (arch === 'qwen2') {
    return {
      tokens: ['<|endoftext|>', '<|im_start|>', '<|im_end|>'],
      bos: null,
      eos: ['<|im_end|>', '<|endoftext|>'],
      addBos: false,
      chatTemplate:
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    };
  }
  return {
    tokens: ['<s>', '</s>'],
    bos: '<s>',
    eos: ['</s>'],
    addBos: true,
    chatTemplate:
      "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}{% endfor %}" +
      "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}",
  };
}

/** Returns the vocabulary size written (byte tokens + special tokens). */
export function writeRandomCheckpoint(dir: string, spec: RandomCheckpointSpec): { vocabSize: number } {
  fs.mkdirSync(dir, { recursive: true });
  const special = specialTokens(spec.architecture);
  const vocabSize = 256 + special.tokens.length;
  const idOf = (tok: string): number => 256 + special.tokens.indexOf(tok);
  const headDim = spec.hiddenSize / spec.numHeads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new Error(`hiddenSize ${spec.hiddenSize} / numHeads ${spec.numHeads} must be an even integer`);
  if (spec.numHeads % spec.numKvHeads !== 0) throw new Error('numHeads must be a multiple of numKvHeads');

  const hfClass = { llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', mistral: 'MistralForCausalLM' }[spec.architecture];
  const torchDtype = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[spec.dtype];
  const config: Record<string, unknown> = {
    architectures: [hfClass],
    model_type: spec.architecture,
    hidden_size: spec.hiddenSize,
    intermediate_size: spec.intermediateSize,
    num_hidden_layers: spec.numLayers,
    num_attention_heads: spec.numHeads,
    num_key_value_heads: spec.numKvHeads,
    head_dim: headDim,
    vocab_size: vocabSize,
    hidden_act: 'silu',
    rms_norm_eps: spec.architecture === 'qwen2' ? 1e-6 : 1e-5,
    rope_theta: spec.ropeTheta ?? (spec.ropeScaling ? 500000 : 10000),
    rope_scaling: spec.ropeScaling
      ? {
          rope_type: 'llama3',
          factor: spec.ropeScaling.factor,
          low_freq_factor: spec.ropeScaling.lowFreqFactor,
          high_freq_factor: spec.ropeScaling.highFreqFactor,
          original_max_position_embeddings: spec.ropeScaling.originalMaxPositionEmbeddings,
        }
      : null,
    max_position_embeddings: spec.maxPositionEmbeddings,
    tie_word_embeddings: spec.tieWordEmbeddings,
    bos_token_id: special.bos === null ? null : idOf(special.bos),
    eos_token_id: special.eos.length === 1 ? idOf(special.eos[0]) : special.eos.map(idOf),
    torch_dtype: torchDtype,
    attention_bias: false,
  };
  if (spec.architecture === 'qwen2') {
    // Real Qwen2 configs carry a window that is off unless use_sliding_window is set.
    config.use_sliding_window = false;
    config.sliding_window = 4096;
  }
  if (spec.architecture === 'mistral') config.sliding_window = spec.slidingWindow ?? null;
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');

  writeSafetensors(path.join(dir, 'model.safetensors'), randomTensors(spec, vocabSize, headDim));

  writeTokenizerFiles(dir, spec, special, idOf);
  return { vocabSize };
}

function randomTensors(spec: RandomCheckpointSpec, vocabSize: number, headDim: number): TensorToWrite[] {
  const rng = new Rng(spec.seed);
  const h = spec.hiddenSize;
  const qDim = spec.numHeads * headDim;
  const kvDim = spec.numKvHeads * headDim;
  const scale = spec.weightScale ?? 1;
  const t: TensorToWrite[] = [];
  const add = (name: string, shape: number[], data: Float32Array): void => {
    t.push({ name, dtype: spec.dtype, shape, data });
  };
  // Linear weights are [out, in]; std 1/sqrt(in) keeps activations O(1) through the layers.
  const linear = (name: string, out: number, inp: number): void => add(name, [out, inp], rng.normals(out * inp, scale / Math.sqrt(inp)));
  const norm = (name: string): void => add(name, [h], rng.normals(h, 0.1, 1));

  // Embeddings ~N(0,1); tied, they also give logits with std ~sqrt(hidden), i.e. decisive.
  const embed = rng.normals(vocabSize * h, 1);
  // Special tokens get small output rows so random text rarely ends on an early EOS.
  const shrinkSpecialRows = (m: Float32Array): void => {
    for (let r = 256; r < vocabSize; r++) for (let c = 0; c < h; c++) m[r * h + c] *= 0.1;
  };
  if (spec.tieWordEmbeddings) shrinkSpecialRows(embed);
  add('model.embed_tokens.weight', [vocabSize, h], embed);
  for (let l = 0; l < spec.numLayers; l++) {
    const p = `model.layers.${l}`;
    norm(`${p}.input_layernorm.weight`);
    linear(`${p}.self_attn.q_proj.weight`, qDim, h);
    linear(`${p}.self_attn.k_proj.weight`, kvDim, h);
    linear(`${p}.self_attn.v_proj.weight`, kvDim, h);
    if (spec.architecture === 'qwen2') {
      add(`${p}.self_attn.q_proj.bias`, [qDim], rng.normals(qDim, 0.2));
      add(`${p}.self_attn.k_proj.bias`, [kvDim], rng.normals(kvDim, 0.2));
      add(`${p}.self_attn.v_proj.bias`, [kvDim], rng.normals(kvDim, 0.2));
    }
    linear(`${p}.self_attn.o_proj.weight`, h, qDim);
    norm(`${p}.post_attention_layernorm.weight`);
    linear(`${p}.mlp.gate_proj.weight`, spec.intermediateSize, h);
    linear(`${p}.mlp.up_proj.weight`, spec.intermediateSize, h);
    linear(`${p}.mlp.down_proj.weight`, h, spec.intermediateSize);
  }
  if (spec.tieWordEmbeddings) {
    // Tied, the input token's own embedding row sits in the residual and would win its own logit
    // (x.x > 0): every model would just repeat its last token. Random signs on the final norm
    // make that self-score zero-mean while keeping the logit scale.
    const w = rng.normals(h, 0.1, 1);
    for (let i = 0; i < h; i++) if (rng.uniform() < 0.5) w[i] = -w[i];
    add('model.norm.weight', [h], w);
  } else {
    norm('model.norm.weight');
  }
  if (!spec.tieWordEmbeddings) {
    // Logit std ~4 after the final norm: peaked enough for a clear greedy winner.
    const lmHead = rng.normals(vocabSize * h, 4 / Math.sqrt(h));
    shrinkSpecialRows(lmHead);
    add('lm_head.weight', [vocabSize, h], lmHead);
  }
  return t;
}

function writeTokenizerFiles(
  dir: string,
  spec: RandomCheckpointSpec,
  special: SpecialTokens,
  idOf: (tok: string) => number,
): void {
  const b2u = byteToUnicode();
  const vocab: Record<string, number> = {};
  for (let b = 0; b < 256; b++) vocab[b2u[b]] = b;
  // Special tokens live only in added_tokens: an id in both lists aborts llama.cpp's loader.
  const addedTokens = special.tokens.map((content) => ({
    id: idOf(content),
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const postProcessor = special.addBos && special.bos
    ? {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: special.bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [
          { SpecialToken: { id: special.bos, type_id: 0 } },
          { Sequence: { id: 'A', type_id: 0 } },
          { SpecialToken: { id: special.bos, type_id: 1 } },
          { Sequence: { id: 'B', type_id: 1 } },
        ],
        special_tokens: { [special.bos]: { id: special.bos, ids: [idOf(special.bos)], tokens: [special.bos] } },
      }
    : { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: postProcessor,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [] as string[],
    },
  };
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));

  const addedTokensDecoder: Record<string, unknown> = {};
  for (const t of addedTokens) {
    const { id, ...rest } = t;
    addedTokensDecoder[String(id)] = rest;
  }
  const tokenizerConfig = {
    add_bos_token: special.addBos,
    add_eos_token: false,
    added_tokens_decoder: addedTokensDecoder,
    bos_token: special.bos,
    eos_token: special.eos[0],
    chat_template: special.chatTemplate,
    clean_up_tokenization_spaces: false,
    model_max_length: spec.maxPositionEmbeddings,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2) + '\n');
}

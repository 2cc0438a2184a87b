import type { ModelConfig } from '../../src/model/config.ts';
import { ropeInvFreq } from '../../src/model/config.ts';
import type { TensorSource } from '../../src/model/safetensors.ts';

/**
 * A plain-TypeScript Llama forward pass over dense arrays, written from the Hugging Face modeling
 * code's semantics (RMSNorm, rotate-half RoPE, GQA causal attention, SwiGLU). It recomputes the
 * whole sequence and returns the logits of every position. Slow, obvious, and independent of the
 * kernels, the paged store and the chunking.
 */
export function referenceLogits(cfg: ModelConfig, src: TensorSource, tokens: number[]): Float32Array[] {
  const T = tokens.length;
  const D = cfg.hiddenSize;
  const d = cfg.headDim;
  const Hq = cfg.numHeads;
  const Hkv = cfg.numKvHeads;
  const G = Hq / Hkv;
  const I = cfg.intermediateSize;
  const get = (n: string) => src.readF32(n);
  const has = new Set(src.names());

  const linear = (x: Float32Array[], w: Float32Array, N: number, K: number, b?: Float32Array) =>
    x.map((row) => {
      const out = new Float32Array(N);
      for (let n = 0; n < N; n++) {
        let s = b ? b[n]! : 0;
        for (let k = 0; k < K; k++) s += row[k]! * w[n * K + k]!;
        out[n] = s;
      }
      return out;
    });
  const rmsnorm = (x: Float32Array[], w: Float32Array) =>
    x.map((row) => {
      let ss = 0;
      for (const v of row) ss += v * v;
      const r = 1 / Math.sqrt(ss / row.length + cfg.rmsNormEps);
      return row.map((v, i) => v * r * w[i]!);
    });
  const inv = ropeInvFreq(cfg);
  const rope = (x: Float32Array[], heads: number) => {
    const half = d / 2;
    x.forEach((row, t) => {
      for (let h = 0; h < heads; h++) {
        for (let i = 0; i < half; i++) {
          const a = t * inv[i]!;
          const c = Math.cos(a);
          const s = Math.sin(a);
          const x0 = row[h * d + i]!;
          const x1 = row[h * d + i + half]!;
          row[h * d + i] = x0 * c - x1 * s;
          row[h * d + i + half] = x1 * c + x0 * s;
        }
      }
    });
  };

  const embed = get('model.embed_tokens.weight');
  let x = tokens.map((id) => embed.slice(id * D, (id + 1) * D));
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const bias = (n: string) => (cfg.attentionBias ? get(`${p}self_attn.${n}_proj.bias`) : undefined);
    const h = rmsnorm(x, get(`${p}input_layernorm.weight`));
    const q = linear(h, get(`${p}self_attn.q_proj.weight`), Hq * d, D, bias('q'));
    const k = linear(h, get(`${p}self_attn.k_proj.weight`), Hkv * d, D, bias('k'));
    const v = linear(h, get(`${p}self_attn.v_proj.weight`), Hkv * d, D, bias('v'));
    rope(q, Hq);
    rope(k, Hkv);
    const att = q.map((qrow, t) => {
      const out = new Float32Array(Hq * d);
      for (let hq = 0; hq < Hq; hq++) {
        const kh = Math.floor(hq / G);
        const scores = new Float64Array(t + 1);
        let max = -Infinity;
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let i = 0; i < d; i++) dot += qrow[hq * d + i]! * k[s]![kh * d + i]!;
          scores[s] = dot / Math.sqrt(d);
          max = Math.max(max, scores[s]!);
        }
        let sum = 0;
        for (let s = 0; s <= t; s++) { scores[s] = Math.exp(scores[s]! - max); sum += scores[s]!; }
        for (let s = 0; s <= t; s++) {
          const pr = scores[s]! / sum;
          for (let i = 0; i < d; i++) out[hq * d + i] += pr * v[s]![kh * d + i]!;
        }
      }
      return out;
    });
    const o = linear(att, get(`${p}self_attn.o_proj.weight`), D, Hq * d);
    x = x.map((row, t) => row.map((val, i) => val + o[t]![i]!));
    const h2 = rmsnorm(x, get(`${p}post_attention_layernorm.weight`));
    const gate = linear(h2, get(`${p}mlp.gate_proj.weight`), I, D);
    const up = linear(h2, get(`${p}mlp.up_proj.weight`), I, D);
    const act = gate.map((g, t) => g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * up[t]![i]!));
    const down = linear(act, get(`${p}mlp.down_proj.weight`), D, I);
    x = x.map((row, t) => row.map((val, i) => val + down[t]![i]!));
  }
  const hn = rmsnorm(x, get('model.norm.weight'));
  const head = has.has('lm_head.weight') && !cfg.tieWordEmbeddings ? get('lm_head.weight') : embed;
  return linear(hn, head, cfg.vocabSize, D);
}

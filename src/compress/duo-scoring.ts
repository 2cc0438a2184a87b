/**
 * The scoring pass behind `duo`'s head pattern (see duo.ts for the formula): mean pre-RoPE query
 * and key of every head over a few texts, the last of q_len RoPE'd copies of the mean query
 * attending to q_len RoPE'd copies of the mean key, and the area under its cumulated attention.
 */
import type { Engine } from '../engine/engine.ts';
import { ropeInvFreq } from '../model/config.ts';
import { essaySentences } from '../eval/ruler/essay.ts';
import { modelFingerprint } from '../eval/runner.ts';
import { DUO_FORMAT, type DuoPattern } from './duo.ts';

export interface DuoScoringOptions {
  /** Texts averaged over (kvpress: 50 BookSum chapters). */
  texts?: number;
  /** Tokens per text. */
  textTokens?: number;
  /** Positions of the synthetic sequence (kvpress: 500). */
  qLen?: number;
  onProgress?: (done: number, total: number) => void;
}

/** RoPE (rotate-half pairs i, i + d/2) of vector x at position p, f32 angles as the kernels. */
function ropeAt(x: Float64Array, p: number, inv: Float32Array): Float64Array {
  const half = inv.length;
  const out = new Float64Array(2 * half);
  for (let i = 0; i < half; i++) {
    const a = Math.fround(p * inv[i]!);
    const c = Math.cos(a);
    const s = Math.sin(a);
    out[i] = x[i]! * c - x[i + half]! * s;
    out[i + half] = x[i + half]! * c + x[i]! * s;
  }
  return out;
}

/** Area under the cumulated attention of the last of qLen RoPE'd mean queries over qLen RoPE'd mean keys. */
export function cumulatedAttentionArea(mq: Float64Array, mk: Float64Array, qLen: number, inv: Float32Array): number {
  const d = mq.length;
  const q = ropeAt(mq, qLen - 1, inv);
  const logits = new Float64Array(qLen);
  let max = -Infinity;
  for (let j = 0; j < qLen; j++) {
    const k = ropeAt(mk, j, inv);
    let dot = 0;
    for (let i = 0; i < d; i++) dot += q[i]! * k[i]!;
    logits[j] = dot / Math.sqrt(d);
    if (logits[j]! > max) max = logits[j]!;
  }
  let z = 0;
  for (let j = 0; j < qLen; j++) z += logits[j] = Math.exp(logits[j]! - max);
  let cum = 0;
  let area = 0;
  for (let j = 0; j < qLen; j++) {
    cum += logits[j]! / z;
    area += cum;
  }
  return area / qLen;
}

/** Texts of the scoring pass: consecutive slices of the essay haystack, `words` words each. */
export function scoringTexts(n: number, words: number): string[] {
  const sentences = essaySentences(n * words + words);
  const out: string[] = [];
  let cur: string[] = [];
  let count = 0;
  for (const s of sentences) {
    cur.push(s);
    count += s.split(' ').length;
    if (count >= words) { out.push(cur.join(' ')); cur = []; count = 0; }
    if (out.length === n) break;
  }
  return out;
}

export async function scoreDuoPattern(engine: Engine, opts: DuoScoringOptions = {}): Promise<DuoPattern> {
  const c = engine.config;
  const nTexts = opts.texts ?? 16;
  const textTokens = opts.textTokens ?? 1024;
  const qLen = opts.qLen ?? 500;
  const d = c.headDim;
  const G = c.numHeads / c.numKvHeads;
  const inv = ropeInvFreq(c);
  const scores = Array.from({ length: c.numLayers }, () => new Array<number>(c.numKvHeads).fill(0));
  const texts = scoringTexts(nTexts, Math.ceil(textTokens * 0.8));
  for (let t = 0; t < texts.length; t++) {
    const ids = engine.tokenizer.encode(texts[t]!, { addSpecialTokens: true }).slice(0, textTokens);
    const sumQ = Array.from({ length: c.numLayers }, () => new Float64Array(c.numHeads * d));
    const sumK = Array.from({ length: c.numLayers }, () => new Float64Array(c.numKvHeads * d));
    const add = (sum: Float64Array, rows: Float32Array, T: number): void => {
      const w = sum.length;
      for (let r = 0; r < T; r++) for (let i = 0; i < w; i++) sum[i]! += rows[r * w + i]!;
    };
    const seq = engine.newSequence();
    try {
      for (let i = 0; i < ids.length; i += 512) {
        engine.model.forward([{
          seq,
          tokens: ids.slice(i, i + 512),
          hooks: {
            onPreRopeQueries: (l, q, T) => add(sumQ[l]!, q, T),
            onPreRopeKeys: (l, k, T) => add(sumK[l]!, k, T),
          },
        }]);
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      seq.release();
    }
    for (let l = 0; l < c.numLayers; l++) {
      for (let h = 0; h < c.numKvHeads; h++) {
        const mk = sumK[l]!.slice(h * d, h * d + d).map((v) => v / ids.length);
        let s = 0;
        for (let g = 0; g < G; g++) {
          const qh = h * G + g;
          const mq = sumQ[l]!.slice(qh * d, qh * d + d).map((v) => v / ids.length);
          s += cumulatedAttentionArea(mq, mk, qLen, inv) / G;
        }
        scores[l]![h]! += s / texts.length;
      }
    }
    opts.onProgress?.(t + 1, texts.length);
  }
  return {
    format: DUO_FORMAT,
    model_fingerprint: await modelFingerprint(engine.dir),
    q_len: qLen,
    texts: texts.length,
    text_tokens: textTokens,
    source: 'consecutive slices of the essay haystack (src/eval/ruler/essay.ts)',
    scores,
  };
}

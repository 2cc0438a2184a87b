import type { Runtime } from '../runtime/wasm.ts';
import type { ModelConfig } from './config.ts';
import { ropeInvFreq } from './config.ts';
import type { Linear, ModelWeights } from './weights.ts';
import { embedTokens } from './weights.ts';
import type { SequenceKV } from '../kv/store.ts';
import type { BlockPool } from '../kv/pool.ts';

/** One sequence's share of a forward call: its new tokens, appended at `seq.nextPosition`. */
export interface ForwardItem {
  seq: SequenceKV;
  tokens: ArrayLike<number>;
}

/** Per-row activation buffers, reallocated only when a call needs more rows than before. */
class Activations {
  rows = 0;
  x = 0; xb = 0; q = 0; k = 0; v = 0; att = 0; proj = 0; gate = 0; up = 0; pos = 0;
  constructor(private rt: Runtime, private cfg: ModelConfig) {}

  ensure(rows: number): void {
    if (rows <= this.rows) return;
    this.dispose();
    const c = this.cfg;
    const f = (n: number): number => this.rt.alloc(rows * n * 4, 64);
    this.x = f(c.hiddenSize);
    this.xb = f(c.hiddenSize);
    this.proj = f(c.hiddenSize);
    this.q = f(c.numHeads * c.headDim);
    this.att = f(c.numHeads * c.headDim);
    this.k = f(c.numKvHeads * c.headDim);
    this.v = f(c.numKvHeads * c.headDim);
    this.gate = f(c.intermediateSize);
    this.up = f(c.intermediateSize);
    this.pos = f(1);
    this.rows = rows;
  }

  dispose(): void {
    if (this.rows === 0) return;
    for (const p of [this.x, this.xb, this.proj, this.q, this.att, this.k, this.v, this.gate, this.up, this.pos]) this.rt.free(p);
    this.rows = 0;
  }
}

/** Query rows per attention job during prefill: small enough to spread a chunk over threads. */
const ROWS_PER_JOB = 16;
const JOB_FIELDS = 8;

/**
 * The decoder-only transformer of the Llama family (Llama 2/3, Qwen2, Mistral), written as the
 * math reads: pre-norm attention with rotary positions over the paged KV store, then a SwiGLU MLP.
 */
export class LlamaModel {
  readonly cfg: ModelConfig;
  readonly weights: ModelWeights;
  private rt: Runtime;
  private pool: BlockPool;
  private act: Activations;
  private invFreq: number;
  private jobs = 0;
  private jobsCap = 0;
  private scratch = 0;
  private scratchFloats = 0;
  private logits = 0;
  private logitsRows = 0;

  constructor(rt: Runtime, cfg: ModelConfig, weights: ModelWeights, pool: BlockPool) {
    this.rt = rt;
    this.cfg = cfg;
    this.weights = weights;
    this.pool = pool;
    this.act = new Activations(rt, cfg);
    const inv = ropeInvFreq(cfg);
    this.invFreq = rt.alloc(inv.length * 4);
    rt.f32(this.invFreq, inv.length).set(inv);
  }

  private linear(out: number, x: number, w: Linear, M: number): void {
    if (w.kind === 'f32') this.rt.k.matmul(out, x, w.ptr, w.bias, M, w.K, w.N);
    else this.rt.k.matmulQ8(out, x, w.q, w.bias, M);
  }

  /**
   * Run the new tokens of every item through the model, appending their K/V to each sequence's
   * store. Returns the logits of each item's last token ([vocab] f32, a copy).
   */
  forward(items: ForwardItem[]): Float32Array[] {
    const rt = this.rt;
    const k = rt.k;
    const c = this.cfg;
    const D = c.hiddenSize;
    const d = c.headDim;
    const Hq = c.numHeads;
    const Hkv = c.numKvHeads;
    const G = Hq / Hkv;
    const qDim = Hq * d;
    const kvDim = Hkv * d;
    const I = c.intermediateSize;

    let M = 0;
    for (const it of items) M += it.tokens.length;
    if (M === 0) return items.map(() => new Float32Array(c.vocabSize));
    const a = this.act;
    a.ensure(M);

    // Token embeddings and RoPE positions of every row.
    const rowStart: number[] = [];
    const positions = new Int32Array(M);
    let r = 0;
    for (const it of items) {
      rowStart.push(r);
      embedTokens(rt, this.weights.embed, it.tokens, a.x + r * D * 4);
      for (let t = 0; t < it.tokens.length; t++) positions[r + t] = it.seq.nextPosition + t;
      r += it.tokens.length;
    }
    rt.i32(a.pos, M).set(positions);

    const nJobs = this.planJobs(items);
    const scale = 1 / Math.sqrt(d);

    for (let l = 0; l < c.numLayers; l++) {
      const w = this.weights.layers[l]!;
      // Attention block: x += Wo · attn(RoPE(Wq·n(x)), RoPE(Wk·n(x)), Wv·n(x))
      k.rmsnorm(a.xb, a.x, w.attnNorm, M, D, c.rmsNormEps);
      this.linear(a.q, a.xb, w.q, M);
      this.linear(a.k, a.xb, w.k, M);
      this.linear(a.v, a.xb, w.v, M);
      k.rope(a.q, M, Hq, d, a.pos, this.invFreq);
      k.rope(a.k, M, Hkv, d, a.pos, this.invFreq);
      for (let i = 0; i < items.length; i++) {
        const it = items[i]!;
        const r0 = rowStart[i]!;
        it.seq.append(l, a.k + r0 * kvDim * 4, a.v + r0 * kvDim * 4, it.tokens.length, positions.subarray(r0, r0 + it.tokens.length));
      }
      this.fillJobs(items, rowStart, l, a.q, a.att);
      k.attendPaged(this.jobs, nJobs, this.pool.basePtr, this.pool.blockSlots, d, G, qDim, scale);
      this.linear(a.proj, a.att, w.o, M);
      k.add(a.x, a.x, a.proj, M * D);

      // MLP block: x += Wdown · (silu(Wgate·n(x)) * Wup·n(x))
      k.rmsnorm(a.xb, a.x, w.mlpNorm, M, D, c.rmsNormEps);
      this.linear(a.gate, a.xb, w.gate, M);
      this.linear(a.up, a.xb, w.up, M);
      k.siluMul(a.gate, a.gate, a.up, M * I);
      this.linear(a.proj, a.gate, w.down, M);
      k.add(a.x, a.x, a.proj, M * D);
    }

    for (const it of items) it.seq.nextPosition += it.tokens.length;

    // Final norm and output head on each item's last row only.
    const n = items.length;
    for (let i = 0; i < n; i++) {
      const last = rowStart[i]! + items[i]!.tokens.length - 1;
      rt.f32(a.xb + i * D * 4, D).set(rt.f32(a.x + last * D * 4, D));
    }
    k.rmsnorm(a.xb, a.xb, this.weights.finalNorm, n, D, c.rmsNormEps);
    if (this.logitsRows < n) {
      if (this.logitsRows) rt.free(this.logits);
      this.logits = rt.alloc(n * c.vocabSize * 4, 64);
      this.logitsRows = n;
    }
    this.linear(this.logits, a.xb, this.weights.lmHead, n);
    const out: Float32Array[] = [];
    for (let i = 0; i < n; i++) out.push(rt.f32(this.logits + i * c.vocabSize * 4, c.vocabSize).slice());
    return out;
  }

  /** Count attention jobs and size the job table and the per-job score scratch. */
  private planJobs(items: ForwardItem[]): number {
    const Hkv = this.cfg.numKvHeads;
    let nJobs = 0;
    let floats = 0;
    for (const it of items) {
      const T = it.tokens.length;
      const chunks = Math.ceil(T / ROWS_PER_JOB);
      // Heads may differ in length after eviction: size every job for the longest.
      let longest = 0;
      for (const head of it.seq.heads) longest = Math.max(longest, head.length);
      nJobs += chunks * Hkv;
      floats += chunks * Hkv * (longest + T);
    }
    if (nJobs > this.jobsCap) {
      if (this.jobsCap) this.rt.free(this.jobs);
      this.jobs = this.rt.alloc(nJobs * JOB_FIELDS * 4, 16);
      this.jobsCap = nJobs;
    }
    if (floats > this.scratchFloats) {
      if (this.scratchFloats) this.rt.free(this.scratch);
      this.scratch = this.rt.alloc(floats * 4, 64);
      this.scratchFloats = floats;
    }
    return nJobs;
  }

  /** One job per (item, KV head, group of query rows), over that head's slots in this layer. */
  private fillJobs(items: ForwardItem[], rowStart: number[], layer: number, q: number, out: number): void {
    const c = this.cfg;
    const d = c.headDim;
    const Hkv = c.numKvHeads;
    const G = c.numHeads / Hkv;
    const rowBytes = c.numHeads * d * 4;
    const jobs = this.rt.i32(this.jobs, this.jobsCap * JOB_FIELDS);
    let j = 0;
    let scratch = this.scratch;
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      const T = it.tokens.length;
      for (let h = 0; h < Hkv; h++) {
        const head = it.seq.head(layer, h);
        for (let a = 0; a < T; a += ROWS_PER_JOB) {
          const b = Math.min(T, a + ROWS_PER_JOB);
          const nKeys = head.length - T + b;
          const off = (rowStart[i]! + a) * rowBytes + h * G * d * 4;
          const o = j * JOB_FIELDS;
          jobs[o] = q + off;
          jobs[o + 1] = out + off;
          jobs[o + 2] = head.tablePtr;
          jobs[o + 3] = nKeys;
          jobs[o + 4] = 0;
          jobs[o + 5] = b - a;
          jobs[o + 6] = scratch;
          jobs[o + 7] = 0;
          scratch += nKeys * 4;
          j++;
        }
      }
    }
  }

  dispose(): void {
    this.act.dispose();
    if (this.jobsCap) this.rt.free(this.jobs);
    if (this.scratchFloats) this.rt.free(this.scratch);
    if (this.logitsRows) this.rt.free(this.logits);
    this.rt.free(this.invFreq);
  }
}

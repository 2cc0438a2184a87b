import type { Runtime } from '../runtime/wasm.ts';
import type { ModelConfig } from './config.ts';
import { ropeInvFreq } from './config.ts';
import type { Linear, ModelWeights } from './weights.ts';
import { embedTokens } from './weights.ts';
import type { SequenceKV } from '../kv/store.ts';
import type { BlockPool } from '../kv/pool.ts';
import { PagedAttention } from '../kv/attend.ts';

/** One sequence's share of a forward call: its new tokens, appended at `seq.nextPosition`. */
export interface ForwardItem {
  seq: SequenceKV;
  tokens: ArrayLike<number>;
  /** How a compression method takes part in this item's forward pass (none: full attention). */
  hooks?: ForwardHooks;
  /**
   * A decode step (one generated token): its attention may read a selected subset and its reads
   * are counted. A one-token prompt chunk is not a decode step.
   */
  decode?: boolean;
}

/**
 * Where a compression method takes part in the forward pass, without the model knowing which
 * method it is. Views passed in are valid only during the call.
 */
export interface ForwardHooks {
  /** After RoPE, for every layer: the item's query rows [T, numHeads * headDim]. */
  onQueries?(layer: number, q: Float32Array, T: number): void;
  /** Before RoPE, for every layer: the item's query rows [T, numHeads * headDim]. */
  onPreRopeQueries?(layer: number, q: Float32Array, T: number): void;
  /** Before RoPE, for every layer: the item's key rows [T, numKvHeads * headDim]. */
  onPreRopeKeys?(layer: number, k: Float32Array, T: number): void;
  /**
   * Decode steps (items marked `decode`): the slots of stored head h this step's attention reads (ascending),
   * or null for all. `q` is the group's queries, [group, headDim].
   */
  select?(layer: number, h: number, q: Float32Array, group: number): Int32Array | Int32Array[] | null;
  /** The same for every stored head of the layer at once (`qs[h]` as `q` above); used instead of `select` when present. */
  selectHeads?(layer: number, qs: Float32Array[], group: number): (Int32Array | Int32Array[] | null)[];
  /** Layer-by-layer prefill (`prefillByLayer`): the layer has seen the whole prompt (`tokens` long). */
  onLayerPrefilled?(layer: number, tokens: number): void;
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
  private attention: PagedAttention;
  private logits = 0;
  private logitsRows = 0;

  constructor(rt: Runtime, cfg: ModelConfig, weights: ModelWeights, pool: BlockPool) {
    this.rt = rt;
    this.cfg = cfg;
    this.weights = weights;
    this.pool = pool;
    this.act = new Activations(rt, cfg);
    this.attention = new PagedAttention(rt, pool, cfg);
    const inv = ropeInvFreq(cfg);
    this.invFreq = rt.alloc(inv.length * 4);
    rt.f32(this.invFreq, inv.length).set(inv);
  }

  /**
   * out[M] = x[M] · w^T as one product over every row of the call (one read of the weights): a
   * row's outputs are the same bits at any row count and place (gemmQ8 sums each output's blocks in
   * one order; every f32 tile sums a row in gemvF32's order), so a sequence's step gives the same
   * bits batched or alone, and a prompt chunk those of the chunk alone.
   */
  private linear(out: number, x: number, w: Linear, M: number): void {
    if (w.kind === 'f32') this.rt.k.matmul(out, x, w.ptr, w.bias, M, w.K, w.N);
    else this.rt.k.matmulQ8Quantized(out, this.rt.k.quantizeAct(x, M, w.K), w.q, w.bias, M);
  }

  /** Several projections of one input: int8 weights share one quantization of it and one split across threads. */
  private linears(x: number, M: number, pairs: [out: number, w: Linear][]): void {
    if (!pairs.every(([, w]) => w.kind === 'q8')) {
      for (const [out, w] of pairs) this.linear(out, x, w, M);
      return;
    }
    const act = this.rt.k.quantizeAct(x, M, pairs[0]![1].K);
    const q8 = pairs.map(([, w]) => w as Extract<Linear, { kind: 'q8' }>);
    this.rt.k.matmulQ8QuantizedMany(pairs.map(([out]) => out), act, q8.map((w) => w.q), q8.map((w) => w.bias), M);
  }

  /**
   * Run the new tokens of every item through the model, appending their K/V to each sequence's
   * store. Returns the logits of each item's last token ([vocab] f32, a copy).
   */
  forward(input: ForwardItem[]): Float32Array[] {
    const items = input;
    const rt = this.rt;
    const c = this.cfg;
    const D = c.hiddenSize;

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

    this.attention.plan(items);
    for (let l = 0; l < c.numLayers; l++) this.layer(l, items, rowStart, M, a.x, positions);

    for (const it of items) {
      if (it.decode) it.seq.reads.steps++;
      it.seq.nextPosition += it.tokens.length;
    }

    // Final norm and output head on each item's last row only.
    const n = items.length;
    for (let i = 0; i < n; i++) {
      const last = rowStart[i]! + items[i]!.tokens.length - 1;
      rt.f32(a.xb + i * D * 4, D).set(rt.f32(a.x + last * D * 4, D));
    }
    return this.head(n);
  }

  /** Final norm and output head over the n rows at the activation buffer's xb (copies of the logits). */
  private head(n: number): Float32Array[] {
    const rt = this.rt;
    const c = this.cfg;
    const a = this.act;
    rt.k.rmsnorm(a.xb, a.xb, this.weights.finalNorm, n, c.hiddenSize, c.rmsNormEps);
    if (this.logitsRows < n) {
      if (this.logitsRows) rt.free(this.logits);
      this.logits = rt.alloc(n * c.vocabSize * 4, 64);
      this.logitsRows = n;
    }
    // One row per item; an item's logits do not depend on the others.
    this.linear(this.logits, a.xb, this.weights.lmHead, n);
    const out: Float32Array[] = [];
    for (let i = 0; i < n; i++) out.push(rt.f32(this.logits + i * c.vocabSize * 4, c.vocabSize).slice());
    return out;
  }

  /**
   * One layer over M rows: hidden states at x (updated in place), RoPE positions in the activation
   * buffer's pos, each item's K/V appended to its store.
   */
  private layer(l: number, items: ForwardItem[], rowStart: number[], M: number, x: number, positions: Int32Array): void {
    const rt = this.rt;
    const k = rt.k;
    const c = this.cfg;
    const a = this.act;
    const D = c.hiddenSize;
    const d = c.headDim;
    const Hq = c.numHeads;
    const Hkv = c.numKvHeads;
    const G = Hq / Hkv;
    const qDim = Hq * d;
    const kvDim = Hkv * d;
    const I = c.intermediateSize;
    const scale = 1 / Math.sqrt(d);
    const w = this.weights.layers[l]!;
    // Attention block: x += Wo · attn(RoPE(Wq·n(x)), RoPE(Wk·n(x)), Wv·n(x))
    k.rmsnorm(a.xb, x, w.attnNorm, M, D, c.rmsNormEps);
    this.linears(a.xb, M, [[a.q, w.q], [a.k, w.k], [a.v, w.v]]);
    if (items.some((it) => it.hooks?.onPreRopeQueries)) {
      const qAll = rt.f32(a.q, M * qDim);
      items.forEach((it, i) => it.hooks?.onPreRopeQueries?.(l, qAll.subarray(rowStart[i]! * qDim, (rowStart[i]! + it.tokens.length) * qDim), it.tokens.length));
    }
    if (items.some((it) => it.hooks?.onPreRopeKeys)) {
      const kAll = rt.f32(a.k, M * kvDim);
      items.forEach((it, i) => it.hooks?.onPreRopeKeys?.(l, kAll.subarray(rowStart[i]! * kvDim, (rowStart[i]! + it.tokens.length) * kvDim), it.tokens.length));
    }
    k.rope(a.q, M, Hq, d, a.pos, this.invFreq);
    k.rope(a.k, M, Hkv, d, a.pos, this.invFreq);
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      const r0 = rowStart[i]!;
      it.seq.append(l, a.k + r0 * kvDim * 4, a.v + r0 * kvDim * 4, it.tokens.length, positions.subarray(r0, r0 + it.tokens.length));
    }
    if (items.some((it) => it.hooks?.onQueries)) {
      const qAll = rt.f32(a.q, M * qDim);
      items.forEach((it, i) => it.hooks?.onQueries?.(l, qAll.subarray(rowStart[i]! * qDim, (rowStart[i]! + it.tokens.length) * qDim), it.tokens.length));
    }
    // Grouped heads (G query heads per stored head) and expanded ones (one each) run as two calls.
    this.attention.run(items, rowStart, l, a.q, a.att);
    this.linear(a.proj, a.att, w.o, M);
    k.add(x, x, a.proj, M * D);

    // MLP block: x += Wdown · (silu(Wgate·n(x)) * Wup·n(x))
    k.rmsnorm(a.xb, x, w.mlpNorm, M, D, c.rmsNormEps);
    this.linears(a.xb, M, [[a.gate, w.gate], [a.up, w.up]]);
    k.siluMul(a.gate, a.gate, a.up, M * I);
    this.linear(a.proj, a.gate, w.down, M);
    k.add(x, x, a.proj, M * D);
  }

  /**
   * One prompt run layer by layer: every chunk through layer 0, then every chunk through layer 1,
   * and so on. Each chunk meets the same kernels with the same rows as in `forward` (chunk after
   * chunk), so the logits and the KV are those of a chunked prefill, bit for bit; after each layer
   * `hooks.onLayerPrefilled` may evict that layer, so the whole prompt's KV of every layer never
   * exists at once. Holds the prompt's hidden states ([tokens, hidden] f32) meanwhile.
   */
  prefillByLayer(item: { seq: SequenceKV; tokens: ArrayLike<number>; hooks?: ForwardHooks }, chunk: number, onLayer?: (done: number) => void): Float32Array {
    const rt = this.rt;
    const c = this.cfg;
    const D = c.hiddenSize;
    const P = item.tokens.length;
    if (P === 0) return new Float32Array(c.vocabSize);
    const a = this.act;
    a.ensure(Math.min(chunk, P));
    const hidden = rt.alloc(P * D * 4, 64);
    try {
      embedTokens(rt, this.weights.embed, item.tokens, hidden);
      const base = item.seq.nextPosition;
      const tokens = Array.from(item.tokens);
      for (let l = 0; l < c.numLayers; l++) {
        for (let c0 = 0; c0 < P; c0 += chunk) {
          const T = Math.min(chunk, P - c0);
          const sub: ForwardItem = { seq: item.seq, tokens: tokens.slice(c0, c0 + T), hooks: item.hooks };
          const positions = Int32Array.from({ length: T }, (_, t) => base + c0 + t);
          rt.i32(a.pos, T).set(positions);
          this.attention.plan([sub]);
          this.layer(l, [sub], [0], T, hidden + c0 * D * 4, positions);
        }
        item.hooks?.onLayerPrefilled?.(l, base + P);
        onLayer?.(l + 1);
      }
      item.seq.nextPosition = base + P;
      rt.f32(a.xb, D).set(rt.f32(hidden + (P - 1) * D * 4, D));
    } finally {
      rt.free(hidden);
    }
    return this.head(1)[0]!;
  }

  dispose(): void {
    this.act.dispose();
    this.attention.dispose();
    if (this.logitsRows) this.rt.free(this.logits);
    this.rt.free(this.invFreq);
  }
}

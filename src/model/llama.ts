import type { Runtime } from '../runtime/wasm.ts';
import { Q8F_MIN_ROWS } from '../runtime/kernels.ts';
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
 * Rows of a forward call that run as one product: every decode row together (one read of the
 * weights for all sequences decoding), each prompt chunk on its own (its arithmetic that of the
 * chunk run alone).
 */
interface RowGroup { r0: number; rows: number; decode: boolean }

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
  private slots = 0;
  private slotsCap = 0;

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

  /**
   * out[rows] = x[rows] · w^T for row ranges of the call: each range is one product. Decode rows
   * take the integer path of int8 weights at any row count (gemvQ8's arithmetic per row), so a
   * decode step gives the same bits batched or alone.
   */
  private linear(out: number, x: number, w: Linear, groups: readonly RowGroup[]): void {
    for (const g of groups) {
      const xo = x + g.r0 * w.K * 4;
      const oo = out + g.r0 * w.N * 4;
      if (w.kind === 'f32') this.rt.k.matmul(oo, xo, w.ptr, w.bias, g.rows, w.K, w.N);
      else this.rt.k.matmulQ8Quantized(oo, this.rt.k.quantizeAct(xo, g.rows, w.K, !g.decode && g.rows >= Q8F_MIN_ROWS), w.q, w.bias, g.rows, g.decode ? 'integer' : 'auto');
    }
  }

  /** Several projections of one input: int8 weights share one quantization of each row range. */
  private linears(x: number, groups: readonly RowGroup[], pairs: [out: number, w: Linear][]): void {
    if (!pairs.every(([, w]) => w.kind === 'q8')) {
      for (const [out, w] of pairs) this.linear(out, x, w, groups);
      return;
    }
    const K = pairs[0]![1].K;
    for (const g of groups) {
      const act = this.rt.k.quantizeAct(x + g.r0 * K * 4, g.rows, K, !g.decode && g.rows >= Q8F_MIN_ROWS);
      for (const [out, w] of pairs) {
        if (w.kind === 'q8') this.rt.k.matmulQ8Quantized(out + g.r0 * w.N * 4, act, w.q, w.bias, g.rows, g.decode ? 'integer' : 'auto');
      }
    }
  }

  /**
   * Run the new tokens of every item through the model, appending their K/V to each sequence's
   * store. Returns the logits of each item's last token ([vocab] f32, a copy).
   */
  forward(input: ForwardItem[]): Float32Array[] {
    // Decode rows first, so that they form one row range (one product per projection for all).
    const isDecode = (it: ForwardItem): boolean => it.decode === true && it.tokens.length === 1;
    const order = input.map((_, i) => i).sort((i, j) => Number(isDecode(input[j]!)) - Number(isDecode(input[i]!)) || i - j);
    const items = order.map((i) => input[i]!);
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
    const decodeRows = items.filter(isDecode).length;
    const groups: RowGroup[] = decodeRows ? [{ r0: 0, rows: decodeRows, decode: true }] : [];
    for (let i = decodeRows; i < items.length; i++) groups.push({ r0: rowStart[i]!, rows: items[i]!.tokens.length, decode: false });

    this.planJobs(items);
    for (let l = 0; l < c.numLayers; l++) this.layer(l, items, rowStart, groups, M, a.x, positions);

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
    const logits = this.head(n);
    const out: Float32Array[] = new Array(n);
    for (let i = 0; i < n; i++) out[order[i]!] = logits[i]!;
    return out;
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
    // One row per item, each with a decode row's arithmetic: an item's logits do not depend on the others.
    this.linear(this.logits, a.xb, this.weights.lmHead, [{ r0: 0, rows: n, decode: true }]);
    const out: Float32Array[] = [];
    for (let i = 0; i < n; i++) out.push(rt.f32(this.logits + i * c.vocabSize * 4, c.vocabSize).slice());
    return out;
  }

  /**
   * One layer over M rows: hidden states at x (updated in place), RoPE positions in the activation
   * buffer's pos, each item's K/V appended to its store.
   */
  private layer(l: number, items: ForwardItem[], rowStart: number[], groups: RowGroup[], M: number, x: number, positions: Int32Array): void {
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
    this.linears(a.xb, groups, [[a.q, w.q], [a.k, w.k], [a.v, w.v]]);
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
    const [grouped, expanded] = this.fillJobs(items, rowStart, l, a.q, a.att);
    this.attend(this.jobs, grouped, G, qDim, scale);
    this.attend(this.jobs + grouped.reduce((x, y) => x + y, 0) * JOB_FIELDS * 4, expanded, 1, qDim, scale);
    this.linear(a.proj, a.att, w.o, groups);
    k.add(x, x, a.proj, M * D);

    // MLP block: x += Wdown · (silu(Wgate·n(x)) * Wup·n(x))
    k.rmsnorm(a.xb, x, w.mlpNorm, M, D, c.rmsNormEps);
    this.linears(a.xb, groups, [[a.gate, w.gate], [a.up, w.up]]);
    k.siluMul(a.gate, a.gate, a.up, M * I);
    this.linear(a.proj, a.gate, w.down, groups);
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
          this.planJobs([sub]);
          this.layer(l, [sub], [0], [{ r0: 0, rows: T, decode: false }], T, hidden + c0 * D * 4, positions);
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

  /**
   * Runs the paged-attention jobs of one pass, `counts[i]` consecutive jobs per item. Whether a
   * decode step's keys are split into ranges (and into how many) is decided for each item from its
   * own jobs, so an item attends the same way in a batch as alone.
   */
  private attend(ptr: number, counts: number[], G: number, rowStride: number, scale: number): void {
    const k = this.rt.k;
    const bytes = JOB_FIELDS * 4;
    let runStart = 0;
    let runJobs = 0;
    let runParts = 0;
    let j = 0;
    for (const n of counts) {
      if (n === 0) continue;
      const parts = k.decodeKeyParts(ptr + j * bytes, n);
      if (runJobs > 0 && parts !== runParts) {
        k.attendPaged(ptr + runStart * bytes, runJobs, this.pool.basePtr, this.pool.blockSlots, this.cfg.headDim, G, rowStride, scale, runParts);
        runJobs = 0;
      }
      if (runJobs === 0) { runStart = j; runParts = parts; }
      runJobs += n;
      j += n;
    }
    if (runJobs > 0) k.attendPaged(ptr + runStart * bytes, runJobs, this.pool.basePtr, this.pool.blockSlots, this.cfg.headDim, G, rowStride, scale, runParts);
  }

  /** Size the job table and the per-job score scratch for the most jobs any layer can need. */
  private planJobs(items: ForwardItem[]): void {
    let nJobs = 0;
    let floats = 0;
    for (const it of items) {
      const chunks = Math.ceil(it.tokens.length / ROWS_PER_JOB);
      // Heads may differ in length after eviction, and expanded layers store one head per query head.
      let longest = 0;
      let most = 0;
      for (let l = 0; l < it.seq.layers; l++) {
        const heads = it.seq.headsIn(l);
        most = Math.max(most, heads.length);
        for (const head of heads) longest = Math.max(longest, head.length);
      }
      // A decode selector may give each query head its own slot list: one job per query head.
      if (it.decode && it.hooks?.select) most = Math.max(most, this.cfg.numHeads);
      nJobs += chunks * most;
      floats += chunks * most * (longest + it.tokens.length);
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
  }

  /**
   * One job per (item, stored head, group of query rows) over that head's slots in this layer:
   * grouped heads first, then heads of expanded layers. Decode steps ask the item's selector which
   * slots to read and count the bytes read. Returns each pass's job count per item.
   */
  private fillJobs(items: ForwardItem[], rowStart: number[], layer: number, q: number, out: number): [number[], number[]] {
    const c = this.cfg;
    const d = c.headDim;
    const G = c.numHeads / c.numKvHeads;
    const rowFloats = c.numHeads * d;
    const rowBytes = rowFloats * 4;

    // Selections first: their total size decides the slot buffer.
    const selections: (Int32Array | Int32Array[] | null)[][] = [];
    let selected = 0;
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      const heads = it.seq.headsIn(layer);
      const group = it.seq.isExpanded(layer) ? 1 : G;
      const sel: (Int32Array | Int32Array[] | null)[] = [];
      if (it.decode && it.tokens.length === 1 && it.hooks?.select) {
        const qRow = this.rt.f32(q + rowStart[i]! * rowBytes, rowFloats);
        for (let h = 0; h < heads.length; h++) {
          const s = it.hooks.select(layer, h, qRow.subarray(h * group * d, (h + 1) * group * d), group);
          if (Array.isArray(s) && s.length !== group) throw new Error(`a selector returned ${s.length} slot lists for a group of ${group}`);
          sel.push(s);
          if (Array.isArray(s)) for (const x of s) selected += x.length;
          else if (s) selected += s.length;
        }
      }
      selections.push(sel);
    }
    if (selected > this.slotsCap) {
      if (this.slotsCap) this.rt.free(this.slots);
      this.slots = this.rt.alloc(selected * 4, 16);
      this.slotsCap = selected;
    }

    const jobs = this.rt.i32(this.jobs, this.jobsCap * JOB_FIELDS);
    let slotPtr = this.slots;
    let scratch = this.scratch;
    let j = 0;
    const counts: [number[], number[]] = [items.map(() => 0), items.map(() => 0)];
    /** The jobs of one stored head for the query heads from `qh0` (the job's kind sets how many), over `list` or all slots. */
    const emit = (i: number, T: number, tablePtr: number, length: number, qh0: number, list: Int32Array | null, pass: number): void => {
      let listPtr = 0;
      let visible = length;
      if (list) {
        this.rt.i32(slotPtr, list.length).set(list);
        listPtr = slotPtr;
        visible = list.length;
        slotPtr += list.length * 4;
      }
      for (let a = 0; a < T; a += ROWS_PER_JOB) {
        const b = Math.min(T, a + ROWS_PER_JOB);
        const nKeys = visible - T + b;
        const off = (rowStart[i]! + a) * rowBytes + qh0 * d * 4;
        const o = j * JOB_FIELDS;
        jobs[o] = q + off;
        jobs[o + 1] = out + off;
        jobs[o + 2] = tablePtr;
        jobs[o + 3] = nKeys;
        jobs[o + 4] = listPtr;
        jobs[o + 5] = b - a;
        jobs[o + 6] = scratch;
        jobs[o + 7] = 0;
        scratch += nKeys * 4;
        j++;
        counts[pass]![i]!++;
      }
    };
    // Pass 0: grouped heads (a group's query heads in one job). Pass 1: one query head per job, for
    // expanded layers and for grouped heads whose selection differs per query head.
    for (const pass of [0, 1]) {
      for (let i = 0; i < items.length; i++) {
        const it = items[i]!;
        const expanded = it.seq.isExpanded(layer);
        if (pass === 0 && expanded) continue;
        const T = it.tokens.length;
        const heads = it.seq.headsIn(layer);
        const group = expanded ? 1 : G;
        for (let h = 0; h < heads.length; h++) {
          const head = heads[h]!;
          const sel = selections[i]![h] ?? null;
          const perQueryHead = Array.isArray(sel);
          if (pass === 0 ? perQueryHead : !expanded && !perQueryHead) continue;
          if (it.decode) {
            // Bytes read: every slot that some query head of the group reads, once.
            let visible = head.length;
            if (Array.isArray(sel)) {
              const union = new Set<number>();
              for (const list of sel) for (const x of list) union.add(x);
              visible = union.size;
            } else if (sel) {
              visible = sel.length;
            }
            it.seq.reads.kBytes += visible * d * 4;
            it.seq.reads.vBytes += visible * d * 4;
          }
          if (Array.isArray(sel)) sel.forEach((list, g) => emit(i, T, head.tablePtr, head.length, h * G + g, list, 1));
          else emit(i, T, head.tablePtr, head.length, h * group, sel, pass);
        }
      }
    }
    return counts;
  }

  dispose(): void {
    this.act.dispose();
    if (this.jobsCap) this.rt.free(this.jobs);
    if (this.scratchFloats) this.rt.free(this.scratch);
    if (this.logitsRows) this.rt.free(this.logits);
    if (this.slotsCap) this.rt.free(this.slots);
    this.rt.free(this.invFreq);
  }
}

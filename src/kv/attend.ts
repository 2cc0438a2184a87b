/**
 * Paged attention as one component: the job tables, slot buffers, per-job score scratch and GQA
 * handling of a forward call's attention, and the accounting of the bytes each decode step reads.
 * The model hands it each layer's queries and output rows; it never sees block tables itself.
 * One job = one (sequence, stored head, up to ROWS_PER_JOB query rows); its record layout is
 * src/kv/job.ts, shared with the kernel.
 */
import type { Runtime } from '../runtime/wasm.ts';
import type { ModelConfig } from '../model/config.ts';
import type { ForwardItem } from '../model/llama.ts';
import type { BlockPool } from './pool.ts';
import { JOB_BYTES, JOB_FIELDS, JOB_KEYS, JOB_OUT, JOB_Q, JOB_ROWS, JOB_SCRATCH, JOB_SLOTS, JOB_TABLE } from './job.ts';

/** Query rows per attention job during prefill: small enough to spread a chunk over threads. */
const ROWS_PER_JOB = 16;

export class PagedAttention {
  private readonly rt: Runtime;
  private readonly pool: BlockPool;
  private readonly cfg: ModelConfig;
  private jobs = 0;
  private jobsCap = 0;
  private scratch = 0;
  private scratchFloats = 0;
  private slots = 0;
  private slotsCap = 0;

  constructor(rt: Runtime, pool: BlockPool, cfg: ModelConfig) {
    this.rt = rt;
    this.pool = pool;
    this.cfg = cfg;
  }

  /**
   * Attention of one layer for every item: q and out are [rows, numHeads * headDim] f32, rows of
   * item i from rowStart[i]. Grouped heads (a GQA group's query heads in one job) and expanded or
   * per-query-head selections (one query head per job) run as two passes.
   */
  run(items: readonly ForwardItem[], rowStart: readonly number[], layer: number, q: number, out: number): void {
    const c = this.cfg;
    const G = c.numHeads / c.numKvHeads;
    const qDim = c.numHeads * c.headDim;
    const scale = 1 / Math.sqrt(c.headDim);
    const [grouped, expanded] = this.fill(items, rowStart, layer, q, out);
    this.attend(this.jobs, grouped, G, qDim, scale);
    this.attend(this.jobs + grouped.reduce((x, y) => x + y, 0) * JOB_BYTES, expanded, 1, qDim, scale);
  }

  /**
   * Runs the paged-attention jobs of one pass, `counts[i]` consecutive jobs per item. Whether a
   * decode step's keys are split into ranges (and into how many) is decided for each item from its
   * own jobs, so an item attends the same way in a batch as alone.
   */
  private attend(ptr: number, counts: number[], G: number, rowStride: number, scale: number): void {
    const k = this.rt.k;
    const bytes = JOB_BYTES;
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
  plan(items: readonly ForwardItem[]): void {
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
  private fill(items: readonly ForwardItem[], rowStart: readonly number[], layer: number, q: number, out: number): [number[], number[]] {
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
      if (it.decode && it.tokens.length === 1 && (it.hooks?.selectHeads || it.hooks?.select)) {
        const qRow = this.rt.f32(q + rowStart[i]! * rowBytes, rowFloats);
        const qs = heads.map((_, h) => qRow.subarray(h * group * d, (h + 1) * group * d));
        const many = it.hooks.selectHeads?.(layer, qs, group);
        for (let h = 0; h < heads.length; h++) {
          const s = many ? many[h]! : it.hooks.select!(layer, h, qs[h]!, group);
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
        jobs[o + JOB_Q] = q + off;
        jobs[o + JOB_OUT] = out + off;
        jobs[o + JOB_TABLE] = tablePtr;
        jobs[o + JOB_KEYS] = nKeys;
        jobs[o + JOB_SLOTS] = listPtr;
        jobs[o + JOB_ROWS] = b - a;
        jobs[o + JOB_SCRATCH] = scratch;
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
    if (this.jobsCap) this.rt.free(this.jobs);
    if (this.scratchFloats) this.rt.free(this.scratch);
    if (this.slotsCap) this.rt.free(this.slots);
    this.jobsCap = this.scratchFloats = this.slotsCap = 0;
  }
}

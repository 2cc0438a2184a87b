/**
 * How tight quest's page bounds are on a real prompt: at the first decode step, for chosen
 * (layer, KV head) pairs, each query head's exact logits q.k of the needle tokens (and their rank
 * among the slots held), the largest logit held, and for the needle's pages their bound
 * U = sum_i max(q_i min_i, q_i max_i), its rank among all pages, and the page's true largest logit,
 * beside the bound of the last page quest reads (the cut). The summaries quest read are checked
 * against ones rebuilt from K (largest difference printed; 0 = exact).
 *
 *   node --import tsx tools/quest_bounds.ts --model M --budget 512 --task niah_single_2 --length 4096
 *        --sample 1 --heads 20:1,23:2 [--page 16] [--threads 1]
 */
import { parseArgs } from 'node:util';
import { Engine } from '../src/engine/engine.ts';
import { methodEntries, registerMethod } from '../src/compress/registry.ts';
import { generateSample } from '../src/eval/ruler/index.ts';
import type { TaskName } from '../src/eval/ruler/types.ts';
import { PageSummary } from '../src/kv/summary.ts';
import { questPageBounds } from '../src/compress/quest.ts';
import { resolveModelOption } from '../src/cli/default-model.ts';

function fail(message: string): never {
  process.stderr.write(`quest_bounds: ${message}\n`);
  process.exit(1);
}
process.on('uncaughtException', (e) => fail(e.message));
process.on('unhandledRejection', (e) => fail((e as Error).message));

const { values: a } = parseArgs({
  options: {
    model: { type: 'string' },
    budget: { type: 'string', default: '512' },
    page: { type: 'string', default: '16' },
    task: { type: 'string', default: 'niah_single_2' },
    length: { type: 'string', default: '4096' },
    sample: { type: 'string', default: '0' },
    seed: { type: 'string', default: '0' },
    heads: { type: 'string', default: '20:1' },
    threads: { type: 'string', default: '1' },
  },
});
const wanted = new Set(a.heads!.split(',').map((s) => {
  const m = /^(\d+):(\d+)$/.exec(s.trim());
  if (!m) fail(`--heads takes layer:head pairs separated by commas (e.g. 20:1,23:2), not '${s}'`);
  return `${m[1]}:${m[2]}`;
}));
const P = Number(a.page);
const budget = Number(a.budget);
const base = methodEntries().find((e) => e.name === 'quest')!;
let step = 0;
let needle: number[] = [];
const out: string[] = [];
registerMethod({
  ...base,
  name: 'quest-bounds-probe',
  create(ctx, opts) {
    const parts = base.create(ctx, opts);
    const sel = parts.selector!;
    const select = sel.select.bind(sel);
    sel.select = (view) => {
      const chosen = select(view);
      if (view.layer === 0 && view.h === 0) step++;
      if (step !== 1 || !wanted.has(`${view.layer}:${view.h}`)) return chosen;
      const n = view.length;
      const d = view.headDim;
      const pages = Math.ceil(n / P);
      const keys = view.keys();
      const fresh = new PageSummary(P, d);
      fresh.rebuild(keys, n);
      let diff = 0;
      if (view.summary) {
        for (let i = 0; i < pages * d; i++) {
          diff = Math.max(diff, Math.abs(fresh.min[i]! - view.summary.min[i]!), Math.abs(fresh.max[i]! - view.summary.max[i]!));
        }
      }
      const slotOf = new Map<number, number>();
      for (let t = 0; t < n; t++) slotOf.set(view.positions[t]!, t);
      const needleSlots = needle.map((p) => slotOf.get(p)).filter((t): t is number => t !== undefined);
      const needlePages = [...new Set(needleSlots.map((t) => Math.floor(t / P)))];
      const want = Math.min(pages, Math.max(Number(opts.min_pages), Math.floor(budget / P)));
      out.push(`layer ${view.layer} head ${view.h}: ${n} slots in ${pages} pages of ${P}, ${want} pages read; summaries read vs rebuilt from K: largest difference ${diff}`);
      for (let g = 0; g < view.group; g++) {
        const q = view.q.subarray(g * d, (g + 1) * d);
        const logit = new Float64Array(n);
        for (let t = 0; t < n; t++) {
          let s = 0;
          for (let i = 0; i < d; i++) s += q[i]! * keys[t * d + i]!;
          logit[t] = s;
        }
        const rank = (v: number): number => { let r = 1; for (let t = 0; t < n; t++) if (logit[t]! > v) r++; return r; };
        let top = -Infinity;
        let topSlot = 0;
        for (let t = 0; t < n; t++) if (logit[t]! > top) { top = logit[t]!; topSlot = t; }
        const bounds = questPageBounds(q, 1, d, fresh, pages);
        const sorted = Array.from(bounds).sort((x, y) => y - x);
        const pageMax = (p: number): number => { let m = -Infinity; for (let t = p * P; t < Math.min(n, (p + 1) * P); t++) m = Math.max(m, logit[t]!); return m; };
        out.push(`  query head ${g}: largest logit ${top.toFixed(2)} (position ${view.positions[topSlot]}); needle logits ${needleSlots.map((t) => logit[t]!.toFixed(2)).join(' ')}, ranks ${needleSlots.map((t) => rank(logit[t]!)).join(' ')}`);
        out.push(`    page bounds: largest ${sorted[0]!.toFixed(2)}, the last read (rank ${want}) ${sorted[want - 1]!.toFixed(2)}, median ${sorted[Math.floor(pages / 2)]!.toFixed(2)}`);
        for (const p of needlePages) {
          out.push(`    needle page ${p}: bound ${bounds[p]!.toFixed(2)}, rank ${sorted.indexOf(bounds[p]!) + 1} of ${pages} (${sorted.indexOf(bounds[p]!) < want ? 'read' : 'not read'}); its largest logit ${pageMax(p).toFixed(2)}`);
        }
      }
      return chosen;
    };
    return parts;
  },
});

const engine = await Engine.load(await resolveModelOption(a.model), { threads: Number(a.threads), weights: 'f32' });
try {
  const tok = { encode: (t: string) => engine.tokenizer.encode(t, { addSpecialTokens: false }) };
  const s = generateSample(a.task as TaskName, { length: Number(a.length), seed: Number(a.seed), index: Number(a.sample), tokenizer: tok });
  const ref = s.references[0]!;
  const start = engine.tokenizer.encode(s.input.slice(0, s.input.indexOf(ref)), { addSpecialTokens: true }).length;
  needle = tok.encode(ref).map((_, k) => start + k);
  const g = engine.generate(s.input, { maxTokens: 2, temperature: 0, kv: { method: 'quest-bounds-probe', budget, page: P } });
  for await (const _ of g) { /* drain */ }
  console.log(`quest budget ${budget} page ${P} on ${a.task} at ${a.length} tokens, sample ${a.sample}: needle ${ref} at tokens ${needle[0]}-${needle.at(-1)}; first decode step`);
  for (const line of out) console.log(line);
} finally {
  await engine.close();
}

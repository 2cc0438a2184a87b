/**
 * Which needle tokens an eviction method keeps, per layer and KV head, with the score it gave each.
 *
 *   node --import tsx tools/needle_survival.ts --method kvcompress --budget 512 [--opt pooling=max]
 *        [--model DIR|FILE|ORG/NAME] [--task niah_single_1] [--length 1024] [--samples 3] [--first 0] [--seed 0] [--threads 2]
 *
 * For each sample: the reference, the answer, then one line per (layer, head) of the first
 * eviction after prefill: slots kept of slots held, a 1/0 per needle value token (kept or
 * evicted), and the method's score of each.
 *
 * For a method with a decode-time selector (quest, sparq, hybrid, rocketkv's second stage...), the
 * first --steps decode steps (default 8) are followed too. Per step, the token it produced and, over
 * every (layer, query head): how many read the whole needle, and how many would have if the same
 * number of slots had been picked by the exact logits q.k (the oracle of the same size). Then, for
 * the --detail step (default: the step producing the answer's first needle digit), one line per
 * (layer, query head): slots read of slots held, 1/0 per needle token, and each needle token's rank
 * by exact logit among the slots held (1 = the largest). A layer read whole (null selection) reads
 * every needle token held. Works for every method with an eviction stage or a selector.
 */
import { parseArgs } from 'node:util';
import { Engine } from '../src/engine/engine.ts';
import { methodEntries, parseOptionPairs, registerMethod } from '../src/compress/registry.ts';
import { generateSample } from '../src/eval/ruler/index.ts';
import type { TaskName } from '../src/eval/ruler/types.ts';
import { resolveModelOption } from '../src/cli/default-model.ts';
import type { Selection, SelectView } from '../src/compress/press.ts';

function fail(message: string): never {
  process.stderr.write(`needle_survival: ${message}\n`);
  process.exit(1);
}
process.on('uncaughtException', (e) => fail(e.message));
process.on('unhandledRejection', (e) => fail((e as Error).message));

const { values: a } = parseArgs({
  options: {
    method: { type: 'string', default: 'kvcompress' },
    budget: { type: 'string', default: '512' },
    opt: { type: 'string', multiple: true, default: [] },
    model: { type: 'string' },
    task: { type: 'string', default: 'niah_single_1' },
    length: { type: 'string', default: '1024' },
    samples: { type: 'string', default: '3' },
    first: { type: 'string', default: '0' },
    seed: { type: 'string', default: '0' },
    threads: { type: 'string', default: '2' },
    steps: { type: 'string', default: '8' },
    detail: { type: 'string' },
  },
});

const base = methodEntries().find((e) => e.name === a.method);
if (!base) fail(`unknown method '${a.method}'; choose one of: ${methodEntries().map((e) => e.name).join(', ')}`);
let needle: number[] = [];
let lines: string[] = [];
let first = true;
const probe = `${base.name}-probe`;
registerMethod({
  ...base,
  name: probe,
  create(ctx, opts) {
    const parts = base.create(ctx, opts);
    const ev = parts.eviction;
    const sel = parts.selector;
    if (!ev && !sel) throw new Error(`${base.name} has no eviction stage and no selector`);
    if (sel) {
      const select = sel.select.bind(sel);
      sel.select = (view) => {
        const out = select(view);
        if (view.layer === 0 && view.h === 0) step++;
        if (step <= maxSteps) recordSelection(step, view, out);
        return out;
      };
    }
    if (!ev) return parts;
    const plan = ev.plan.bind(ev);
    ev.plan = (scores, pc) => {
      const kept = plan(scores, pc);
      if (first) {
        first = false;
        for (let l = 0; l < kept.length; l++) {
          for (let h = 0; h < kept[l]!.length; h++) {
            const pos = pc.positions[l]![h]!;
            const keptPos = new Set(Array.from(kept[l]![h]!, (s) => pos[s]!));
            const slotOf = new Map(Array.from(pos.subarray(0, pc.lengths[l]![h]!), (p, s) => [p, s] as const));
            const marks = needle.map((p) => (keptPos.has(p) ? '1' : '0')).join('');
            const sc = needle.map((p) => { const s = slotOf.get(p); return s === undefined ? '-' : scores[l]![h]![s]!.toExponential(1); });
            lines.push(`  layer ${l} head ${h}: kept ${kept[l]![h]!.length}/${pc.lengths[l]![h]}  needle ${marks}  scores ${sc.join(' ')}`);
          }
        }
      }
      return kept;
    };
    return parts;
  },
});

// Selection probe: per decode step, per (layer, query head), the needle tokens read and their exact-logit ranks.
interface HeadRead { layer: number; h: number; g: number; read: number; held: number; marks: string; ranks: number[]; oracleWhole: boolean }
const maxSteps = Number(a.steps);
let step = 0;
let reads: HeadRead[][] = [];
function recordSelection(s: number, view: SelectView, out: Selection): void {
  const n = view.length;
  const d = view.headDim;
  const keys = view.keys();
  const slotOf = new Map<number, number>();
  for (let t = 0; t < n; t++) slotOf.set(view.positions[t]!, t);
  const needleSlots = needle.map((p) => slotOf.get(p));
  for (let g = 0; g < view.group; g++) {
    const q = view.q.subarray(g * d, (g + 1) * d);
    const logit = new Float64Array(n);
    for (let t = 0; t < n; t++) {
      let dot = 0;
      for (let i = 0; i < d; i++) dot += q[i]! * keys[t * d + i]!;
      logit[t] = dot;
    }
    const chosen = out === null ? null : Array.isArray(out) ? out[g]! : out;
    const readSet = chosen === null ? null : new Set(chosen);
    const read = chosen === null ? n : chosen.length;
    const marks = needleSlots.map((t) => (t === undefined ? '-' : readSet === null || readSet.has(t) ? '1' : '0')).join('');
    const ranks = needleSlots.map((t) => {
      if (t === undefined) return -1;
      let r = 1;
      for (let u = 0; u < n; u++) if (logit[u]! > logit[t]!) r++;
      return r;
    });
    // The oracle of the same size reads the `read` slots of largest logit: it holds every needle token ranked within it.
    const oracleWhole = ranks.every((r) => r > 0 && r <= read);
    (reads[s - 1] ??= []).push({ layer: view.layer, h: view.h, g, read, held: n, marks, ranks, oracleWhole });
  }
}

const engine = await Engine.load(await resolveModelOption(a.model), { threads: Number(a.threads), weights: 'f32' });
try {
  const tok = { encode: (t: string) => engine.tokenizer.encode(t, { addSpecialTokens: false }) };
  console.log(`${a.method} budget ${a.budget} ${(a.opt ?? []).join(' ')} on ${a.task} at ${a.length} tokens`);
  for (let i = Number(a.first); i < Number(a.first) + Number(a.samples); i++) {
    const s = generateSample(a.task as TaskName, { length: Number(a.length), seed: Number(a.seed), index: i, tokenizer: tok });
    const ref = s.references[0]!;
    const ids = engine.tokenizer.encode(s.input, { addSpecialTokens: true });
    const start = engine.tokenizer.encode(s.input.slice(0, s.input.indexOf(ref)), { addSpecialTokens: true }).length;
    const valueIds = tok.encode(ref);
    needle = valueIds.map((_, k) => start + k);
    const seen = engine.tokenizer.decode(needle.map((p) => ids[p]!));
    if (seen !== ref) throw new Error(`sample ${i}: tokens at the needle read '${seen}', not '${ref}'`);
    lines = [];
    first = true;
    step = 0;
    reads = [];
    const g = engine.generate(s.input, { maxTokens: s.maxNewTokens, temperature: 0, kv: { ...parseOptionPairs(a.opt), method: probe, budget: Number(a.budget) } });
    for await (const _ of g) { /* drain */ }
    console.log(`sample ${i}: needle ${ref} at tokens ${needle[0]}-${needle.at(-1)} of ${ids.length}, answer ${JSON.stringify(g.text)}`);
    for (const line of lines) console.log(line);
    if (reads.length > 0) printReads(g.tokens, valueIds);
  }
} finally {
  await engine.close();
}

function printReads(tokens: number[], valueIds: number[]): void {
  const text = (t: number | undefined): string => (t === undefined ? '(none)' : JSON.stringify(engine.tokenizer.decode([t])));
  console.log('  decode steps (step s produces answer token s; token 0 comes from the prefill):');
  for (let s = 1; s <= reads.length; s++) {
    const r = reads[s - 1]!;
    const whole = r.filter((x) => !x.marks.includes('0') && !x.marks.includes('-')).length;
    const oracle = r.filter((x) => x.oracleWhole).length;
    console.log(`  step ${s} -> ${text(tokens[s])}: whole needle read by ${whole}/${r.length} (layer, query head); exact top of the same size: ${oracle}/${r.length}`);
  }
  // The detail step: the first that produced a needle digit (else the first step).
  let detail = a.detail !== undefined ? Number(a.detail) : 0;
  if (a.detail === undefined) {
    for (let s = 1; s <= reads.length && detail === 0; s++) if (valueIds.includes(tokens[s]!)) detail = s;
    if (detail === 0) detail = 1;
  }
  const r = reads[detail - 1];
  if (!r) return;
  console.log(`  step ${detail} per (layer, kv head, query head): read/held, needle tokens read, their exact-logit ranks`);
  for (const x of r) console.log(`    layer ${x.layer} head ${x.h}.${x.g}: read ${x.read}/${x.held}  needle ${x.marks}  ranks ${x.ranks.join(' ')}`);
}

/**
 * Which needle tokens an eviction method keeps, per layer and KV head, with the score it gave each.
 *
 *   node --import tsx tools/needle_survival.ts --method kvcompress --budget 512 [--opt pooling=max]
 *        [--model DIR|FILE|ORG/NAME] [--task niah_single_1] [--length 1024] [--samples 3] [--first 0] [--seed 0] [--threads 2]
 *
 * For each sample: the reference, the answer, then one line per (layer, head) of the first
 * eviction after prefill: slots kept of slots held, a 1/0 per needle value token (kept or
 * evicted), and the method's score of each. Works for every method with an eviction stage.
 */
import { parseArgs } from 'node:util';
import { Engine } from '../src/engine/engine.ts';
import { methodEntries, parseOptionPairs, registerMethod } from '../src/compress/registry.ts';
import { generateSample } from '../src/eval/ruler/index.ts';
import type { TaskName } from '../src/eval/ruler/types.ts';
import { resolveModelOption } from '../src/cli/default-model.ts';

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
    if (!ev) throw new Error(`${base.name} has no eviction stage`);
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
    const g = engine.generate(s.input, { maxTokens: s.maxNewTokens, temperature: 0, kv: { ...parseOptionPairs(a.opt), method: probe, budget: Number(a.budget) } });
    for await (const _ of g) { /* drain */ }
    console.log(`sample ${i}: needle ${ref} at tokens ${needle[0]}-${needle.at(-1)} of ${ids.length}, answer ${JSON.stringify(g.text)}`);
    for (const line of lines) console.log(line);
  }
} finally {
  await engine.close();
}

/**
 * Variable tracking (RULER scripts/data/synthetic/variable_tracking.py, config: noise haystack,
 * 1 chain, 4 hops). The chain "VAR ABCDE = 12345", "VAR FGHIJ = VAR ABCDE ", ... (5 distinct
 * 5-letter names, value in [10000, 99999)) is spread over lines of the noise filler, in order. As in
 * RULER, a one-shot example comes first: the same task fitted to ~500 tokens with 3-letter names,
 * its answer appended, names and value then re-randomized. When the length cannot hold the example
 * and the task together (where RULER would fail), the example is left out.
 */
import { UsageError } from '../../errors.ts';
import { Rng } from './rng.ts';
import { largestFitting } from './sizing.ts';
import { NOISE_FILLER, VARIABLE_TRACKING, fill } from './templates.ts';
import type { GenerateSampleOptions, Sample } from './types.ts';

const NUM_CHAINS = 1;
const NUM_HOPS = 4;
/** RULER fits its one-shot example to 500 tokens. */
const EXAMPLE_TOKENS = 500;
const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

function names(rng: Rng, count: number, letters: number, taken: Set<string>): string[] {
  const out: string[] = [];
  while (out.length < count) {
    let s = '';
    for (let i = 0; i < letters; i++) s += LETTERS[rng.int(0, 25)];
    // "VAR" itself would make the text ambiguous.
    if (taken.has(s) || s === 'VAR') continue;
    taken.add(s);
    out.push(s);
  }
  return out;
}

interface Chain { vars: string[]; value: string; lines: string[] }

function makeChain(vars: string[], value: string): Chain {
  const lines = [`VAR ${vars[0]} = ${value}`];
  for (let j = 0; j < NUM_HOPS; j++) lines.push(`VAR ${vars[j + 1]} = VAR ${vars[j]} `);
  return { vars, value, lines };
}

/** The chain lines placed at fixed fractions of `n` filler lines, in chain order. */
function noiseContext(chain: Chain, fractions: number[], n: number): string {
  const lines: string[] = new Array<string>(n).fill(NOISE_FILLER);
  // RULER: sorted distinct positions in the filler, the j-th chain line inserted at position_j + j.
  const pos = fractions.map((f) => Math.floor(f * n)).sort((a, b) => a - b);
  chain.lines.forEach((line, j) => lines.splice(pos[j]! + j, 0, line));
  return lines.join('\n').replaceAll('. \n', '.\n');
}

function prompt(context: string, value: string): { before: string; question: string; answerPrefix: string } {
  const vars = { query: value, num_v: NUM_HOPS + 1 };
  return { before: VARIABLE_TRACKING.before + context, question: fill(VARIABLE_TRACKING.after, vars), answerPrefix: fill(VARIABLE_TRACKING.answerPrefix, vars) };
}

export function generateVt(o: GenerateSampleOptions): Sample {
  const rng = Rng.forStream('ruler', 'vt', o.seed, o.index);
  const taken = new Set<string>();
  const chain = makeChain(names(rng, (NUM_HOPS + 1) * NUM_CHAINS, 5, taken), String(rng.int(10000, 99998)));
  const fractions = chain.lines.map(() => rng.next());

  // One-shot example: RULER builds it with value 12345 and 3-letter names, then swaps in fresh ones;
  // drawing the fresh names and value directly gives the same text.
  const exChain = makeChain(names(rng, NUM_HOPS + 1, 3, taken), String(rng.int(10000, 99998)));
  const exFractions = exChain.lines.map(() => rng.next());
  const exText = (n: number): string => {
    const p = prompt(noiseContext(exChain, exFractions, n), exChain.value);
    return p.before + p.question + p.answerPrefix;
  };
  const avail = o.length - VARIABLE_TRACKING.tokensToGenerate;
  const build = (example: string, n: number): ReturnType<typeof prompt> => {
    const p = prompt(noiseContext(chain, fractions, n), chain.value);
    return example ? { ...p, before: `${example}\n${p.before}` } : p;
  };
  const fit = (example: string): number => largestFitting((n) => {
    const p = build(example, n);
    return o.tokenizer.encode(p.before + p.question + p.answerPrefix).length;
  }, avail, 1, 'vt');
  let example = '';
  let n: number;
  try {
    // Below ~1K tokens a 500-token example would crowd out the task; give it at most half.
    const exBudget = Math.min(EXAMPLE_TOKENS, Math.floor(avail / 2));
    const exN = largestFitting((k) => o.tokenizer.encode(exText(k)).length, exBudget, 1, 'vt (one-shot example)');
    example = `${exText(exN)} ${exChain.vars.join(' ')}\n`;
    n = fit(example);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    // The length cannot hold the example and the task together (e.g. a byte-level tokenizer at 1K): leave the example out.
    example = '';
    n = fit(example);
  }
  const p = build(example, n);
  return {
    task: 'vt', index: o.index, seed: o.seed, length: o.length,
    context: p.before, question: p.question, answerPrefix: p.answerPrefix,
    input: p.before + p.question + p.answerPrefix,
    references: chain.vars.slice(), maxNewTokens: VARIABLE_TRACKING.tokensToGenerate,
  };
}

/**
 * Common words extraction (RULER scripts/data/synthetic/common_words_extraction.py, config:
 * 10 common words x30, the others x3). A numbered list "1. word 2. word ..." of shuffled words; the
 * answer is the 10 most frequent. Below 4096 tokens RULER uses x6 / x1 instead. One solved example
 * comes first (40 words x10/x3, or 20 words x3/x1 below 4096). Words: the shipped pool from
 * words.ts while the list needs no more distinct words than it holds, else generated pseudo-words.
 * When the length cannot hold the example and the task together (where RULER would fail), the
 * example is left out.
 */
import { UsageError } from '../../errors.ts';
import { Rng } from './rng.ts';
import { largestFitting } from './sizing.ts';
import { COMMON_WORDS } from './templates.ts';
import type { GenerateSampleOptions, Sample } from './types.ts';
import { pseudoWords, shippedWordPool } from './words.ts';

const NUM_COMMON = 10;
/** Made-up words to draw from once the shipped words run out (RULER's large list has ~100K+). */
const PSEUDO_POOL = 20_000;

function wordList(rng: Rng, numWords: number, commonRepeats: number, uncommonRepeats: number): { text: string; common: string[] } {
  // A pool of fixed size for a given numWords (the generated list is shared and only grows), so that
  // a sample never depends on what was generated before it.
  const pool = numWords <= shippedWordPool().length ? shippedWordPool() : pseudoWords(Math.max(numWords, PSEUDO_POOL)).slice(0, Math.max(numWords, PSEUDO_POOL));
  const picked = rng.sample(pool, numWords);
  const common = picked.slice(0, NUM_COMMON);
  const list: string[] = [];
  for (let r = 0; r < commonRepeats; r++) list.push(...common);
  for (let r = 0; r < uncommonRepeats; r++) list.push(...picked.slice(NUM_COMMON));
  rng.shuffle(list);
  return { text: list.map((w, i) => `${i + 1}. ${w}`).join(' '), common };
}

export function generateCwe(o: GenerateSampleOptions): Sample {
  const small = o.length < 4096;
  const [exWords, exCommon, exUncommon] = small ? [20, 3, 1] : [40, 10, 3];
  const [common, uncommon] = small ? [6, 1] : [30, 3];
  const ex = wordList(Rng.forStream('ruler', 'cwe', o.seed, o.index, 'example'), exWords, exCommon, exUncommon);
  const example = COMMON_WORDS.before + ex.text + COMMON_WORDS.after + COMMON_WORDS.answerPrefix
    + ' ' + ex.common.map((w, i) => `${i + 1}. ${w}`).join(' ');

  // Each size draws its list from the same seed, so the text is a pure function of the size.
  const build = (withExample: boolean, n: number): { context: string; common: string[] } => {
    const l = wordList(Rng.forStream('ruler', 'cwe', o.seed, o.index, 'list'), n, common, uncommon);
    return { context: `${withExample ? `${example}\n` : ''}${COMMON_WORDS.before}${l.text}`, common: l.common };
  };
  const question = COMMON_WORDS.after;
  const answerPrefix = COMMON_WORDS.answerPrefix;
  const fit = (withExample: boolean): number => largestFitting(
    (n) => o.tokenizer.encode(build(withExample, n).context + question + answerPrefix).length,
    o.length - COMMON_WORDS.tokensToGenerate, NUM_COMMON + 1, 'cwe');
  let withExample = true;
  let n: number;
  try {
    n = fit(true);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    // The length cannot hold the example and the task together (e.g. a byte-level tokenizer at 1-4K): leave the example out.
    withExample = false;
    n = fit(false);
  }
  const { context, common: references } = build(withExample, n);
  return {
    task: 'cwe', index: o.index, seed: o.seed, length: o.length,
    context, question, answerPrefix, input: context + question + answerPrefix,
    references, maxNewTokens: COMMON_WORDS.tokensToGenerate,
  };
}

/**
 * Frequent words extraction (RULER scripts/data/synthetic/freq_words_extraction.py, alpha = 2).
 * A vocabulary of (length - 50) / 50 random 6-letter "coded words"; the word of rank k appears
 * floor(N * k^-alpha / zeta(alpha)) times, rank 1 being the noise token "..."; the text is the
 * shuffled words. The answer is ranks 2-4. N is the largest that fits.
 */
import { Rng } from './rng.ts';
import { largestFitting } from './sizing.ts';
import { FREQ_WORDS } from './templates.ts';
import type { GenerateSampleOptions, Sample } from './types.ts';

const ALPHA = 2;
const CODED_WORD_LETTERS = 6;
/** zeta(2) = pi^2 / 6. */
const ZETA_ALPHA = (Math.PI * Math.PI) / 6;

export function generateFwe(o: GenerateSampleOptions): Sample {
  const rng = Rng.forStream('ruler', 'fwe', o.seed, o.index);
  const vocabSize = Math.max(4, Math.floor((o.length - FREQ_WORDS.tokensToGenerate) / 50));
  const seen = new Set<string>();
  const vocab: string[] = [];
  while (vocab.length < vocabSize) {
    let w = '';
    for (let i = 0; i < CODED_WORD_LETTERS; i++) w += String.fromCharCode(97 + rng.int(0, 25));
    if (!seen.has(w)) { seen.add(w); vocab.push(w); }
  }
  vocab[0] = '...';   // the top rank is noise, as in RULER

  const build = (numWords: number): string => {
    const words: string[] = [];
    for (let k = 1; k <= vocab.length; k++) {
      const count = Math.floor((numWords * k ** -ALPHA) / ZETA_ALPHA);
      for (let c = 0; c < count; c++) words.push(vocab[k - 1]!);
    }
    Rng.forStream('ruler', 'fwe', o.seed, o.index, 'order').shuffle(words);
    return FREQ_WORDS.before + words.join(' ');
  };
  const question = FREQ_WORDS.after;
  const answerPrefix = FREQ_WORDS.answerPrefix;
  const tokensAt = (n: number): number => o.tokenizer.encode(build(n) + question + answerPrefix).length;
  // The smallest N at which rank 4 appears at least once: 16 * zeta(2) < 27.
  const n = largestFitting(tokensAt, o.length - FREQ_WORDS.tokensToGenerate, 27, 'fwe');
  const context = build(n);
  return {
    task: 'fwe', index: o.index, seed: o.seed, length: o.length,
    context, question, answerPrefix, input: context + question + answerPrefix,
    references: vocab.slice(1, 4), maxNewTokens: FREQ_WORDS.tokensToGenerate,
  };
}

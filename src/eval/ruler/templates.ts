/**
 * RULER's prompt templates (scripts/data/synthetic/constants.py, `base` model template), split at
 * `{context}` and at the answer prefix so that the runner can compress the context alone.
 * Each task's input is `before + context + after + answerPrefix`.
 */

export interface TaskTemplate {
  /** Text before `{context}`. */
  before: string;
  /** Text after `{context}` (the question). */
  after: string;
  /** RULER's answer_prefix, appended after the question. */
  answerPrefix: string;
  /** RULER's tokens_to_generate. */
  tokensToGenerate: number;
}

export const NIAH: TaskTemplate = {
  before: 'Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. I will quiz you about the {type_needle_v} afterwards.\n',
  after: '\nWhat are all the special magic {type_needle_v} for {query} mentioned in the provided text?',
  answerPrefix: ' The special magic {type_needle_v} for {query} mentioned in the provided text are',
  tokensToGenerate: 128,
};

export const NIAH_NEEDLE = 'One of the special magic {type_needle_v} for {key} is: {value}.';

export const NOISE_FILLER = 'The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.';

export const VARIABLE_TRACKING: TaskTemplate = {
  before: 'Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n',
  after: '\nQuestion: Find all variables that are assigned the value {query} in the text above.',
  answerPrefix: ' Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are assigned the value {query}, they are: ',
  tokensToGenerate: 30,
};

export const COMMON_WORDS: TaskTemplate = {
  before: 'Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n',
  after: '\nQuestion: What are the 10 most common words in the above list?',
  answerPrefix: ' Answer: The top 10 words that appear most often in the list are:',
  tokensToGenerate: 120,
};

export const FREQ_WORDS: TaskTemplate = {
  before: 'Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared coded words. ',
  after: "\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in the above coded text?",
  answerPrefix: ' Answer: According to the coded text above, the three most frequently appeared words are:',
  tokensToGenerate: 50,
};

/** Fill `{name}` placeholders (Python str.format style, names only). */
export function fill(template: string, values: Record<string, string | number>): string {
  return template.replace(/\{(\w+)\}/g, (m, name: string) => (name in values ? String(values[name]) : m));
}

/**
 * RULER's rewrite of the niah template when the answer is a single value: the same literal string
 * replacements, in the same order, applied to the template before it is filled.
 */
export function singularize(template: string): string {
  return template.replaceAll('Some', 'A').replaceAll('are all', 'is').replaceAll('are', 'is').replaceAll('answers', 'answer');
}

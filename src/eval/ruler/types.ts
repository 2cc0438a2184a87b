/** Shapes shared by the RULER task generators, the runner and the metrics. */

/** Counts tokens of a text; must add no special tokens (BOS/EOS), like RULER's `text_to_tokens`. */
export interface TextTokenizer { encode(text: string): number[] }

export type TaskName = 'niah_single_1' | 'niah_single_2' | 'niah_single_3' | 'niah_multikey_1' | 'niah_multikey_2'
  | 'niah_multikey_3' | 'niah_multivalue' | 'niah_multiquery' | 'vt' | 'cwe' | 'fwe';

export interface Sample {
  task: TaskName;
  index: number;
  seed: number;
  /** Target tokens: tokens(input) + maxNewTokens <= length. */
  length: number;
  /** Everything before the question: instruction header, few-shot example(s), haystack with needles. */
  context: string;
  /** The query text appended after the context (the template's question part). */
  question: string;
  /** Appended after the question; generation continues from it. */
  answerPrefix: string;
  /** context + question + answerPrefix, exactly as fed to the model. */
  input: string;
  /** Strings that must appear in the prediction. */
  references: string[];
  /** tokens_to_generate of RULER's task config. */
  maxNewTokens: number;
  /** Depth in [0,1] of the needle holding the first reference (niah only). */
  depth?: number;
  /**
   * Multi-turn samples (`turns` option): every question asked of the one context, in order. The
   * first is this sample's own question; each later one is sent after the previous answer.
   */
  turns?: TurnQuery[];
}

/** One question of a multi-turn sample. */
export interface TurnQuery {
  question: string;
  answerPrefix: string;
  references: string[];
}

export interface GenerateSampleOptions {
  /** Target tokens (input + maxNewTokens). */
  length: number;
  seed: number;
  index: number;
  tokenizer: TextTokenizer;
  /** Put every needle at this depth in [0,1] instead of random depths (niah only). */
  depth?: number;
  /**
   * Ask this many questions of one context (niah tasks only), each about keys of its own; the
   * length then covers the context, every question and every answer. 1 (the default) is a plain sample.
   */
  turns?: number;
}
